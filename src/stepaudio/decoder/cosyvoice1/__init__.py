"""CosyVoice-300M-25Hz decoder (Step-Audio v1): flow ids + voice prompt -> 22.05 kHz speech.

Flow `MaskedDiffWithXvec` (conformer, length regulator, CFM estimator) then the HiFT vocoder; `token2wav` runs
them offline, batched or streamed.
"""
