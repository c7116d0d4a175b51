"""CosyVoice2-style 24 kHz decoder (Step-Audio 2's token2wav): causal flow + HiFT at 24 kHz.

Flow `CausalMaskedDiffWithXvec` (UpsampleConformerEncoderV2 with a pre-lookahead layer, CFM with a DiT
estimator), then HiFT with the `SineGen2` source; `token2wav` runs them offline, `token2wav_stream` chunk by
chunk with the reference's caches.

EditX's decoder (REFERENCE-EDITX.md section 6) is meant to live here too; what it changes: its config is the
`flow:` / `hift:` nodes of `cosyvoice.yaml` (`config.flow_config_from_tree` takes any parsed tree), the token
embedding looks up vq02 and vq06 codes in one half-width table and concatenates them (`input_embedding` of the
flow would become a module of its own), the prompt mel is nearest-resized instead of replicate-padded
(`prompt.fit_prompt_mel`), the vocoder sizes come from the yaml, and it decodes offline only.
"""
