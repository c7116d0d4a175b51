"""Linear layers over reduced-precision CPU weights (int8, fp16, pre-packed bf16), shared by every model family.

Below lm/, tokenizer/ and decoder/ so that each can use them without importing another: torch and
stepaudio.hardware only, no model knowledge. Which format a model gets is decided by its own package
(`stepaudio.lm.quant` for the LMs, `stepaudio.tokenizer.paraformer.fast` for the vq02 encoder).
"""
