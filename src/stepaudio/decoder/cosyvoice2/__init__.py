"""CosyVoice2-style 24 kHz decoder (Step-Audio 2's token2wav): causal flow + HiFT at 24 kHz.

Flow `CausalMaskedDiffWithXvec` (UpsampleConformerEncoderV2 with a pre-lookahead layer, CFM with a DiT
estimator), then HiFT with the `SineGen2` source; `token2wav` runs them offline, `token2wav_stream` chunk by
chunk with the reference's caches. EditX's decoder is the same family with another token front end (see
`config.FlowConfig.vocab_size` and the note in `flow.py`).
"""
