"""The HTTP server: OpenAI-compatible REST routes over an engine and a voice store (FastAPI + uvicorn).

`create_app(engine, settings, store)` (app.py) builds it; `stepaudio serve` runs it. Routes (openai.py):

  POST   /v1/audio/speech          text to speech: wav, pcm, flac, mp3, opus; `stream_format` audio | sse.
                                   Extensions: `voice` may be a registered voice id or name (or {"id": ...});
                                   `emotion`, `dialect`, `style`, `tags`, `pitch`, `volume`, `strict`
                                   (unknown tags or unfollowable instructions become a 400).
  POST   /v1/audio/transcriptions  json, text, verbose_json, srt, vtt; `stream=true` for SSE events.
  POST   /v1/chat/completions      text and `input_audio` parts in; text, tool calls and, with
                                   `modalities: ["text", "audio"]` and `audio: {voice, format}`, speech out.
  POST   /v1/voices                multipart `name`, `file` (or `audio_sample`), `transcript` (optional when
                                   the engine can transcribe): a cloned voice. GET lists, GET /{id} shows,
                                   DELETE /{id} removes. Also at /v1/audio/voices for the OpenAI client.
  GET    /v1/models, /v1/models/{id}, /health (open without the API key)
  GET    /openapi.json             the schema of all of these, true to this server (api_schema.py): its
                                   limits, its refusals and every error status it can answer.

Errors are `{"error": {"message", "type", "param", "code"}}` with 400/401/403/404/405/408/409/413/415/422/503
(403: a browser page on another origin; see origin.py).
"""
