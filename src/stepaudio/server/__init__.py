"""The HTTP server: OpenAI-compatible REST routes over an engine and a voice store (FastAPI)."""
