"""The Step-Audio engine: audio tokenizer, Step1 chat and TTS models, flow + HiFT decoder."""
