"""vq02: the Paraformer streaming encoder (FunASR layout) that `tokenizer.linguistic` quantises to codes."""
