"""The Step-Audio 2 engine: audio encoder + adaptor and Qwen2 LM from one release folder (token2wav to come)."""
