"""CosyVoice2-style 24 kHz decoder (Step-Audio 2's token2wav): causal flow + HiFT at 24 kHz.

Flow `CausalMaskedDiffWithXvec` (UpsampleConformerEncoderV2 with a pre-lookahead layer, CFM with a DiT
estimator), then HiFT with the `SineGen2` source; `token2wav` runs them offline, `token2wav_stream` chunk by
chunk with the reference's caches.

EditX's decoder (REFERENCE-EDITX.md section 6) is the same flow and HiFT24k read from one `cosyvoice.yaml`, with a
dual-codebook half-width token embedding and a nearest-resized prompt mel: `editx` (config, embedding, key map)
and `editx_token2wav` (offline, as the release decodes).
"""
