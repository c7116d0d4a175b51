"""The lite engine: small packaged CPU models (Whisper, a GGUF chat model, Piper and espeak-ng) behind the
engine interfaces; `engine.create_engine` builds it."""
