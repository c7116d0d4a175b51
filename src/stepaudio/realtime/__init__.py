"""Real-time speech conversation (OpenAI Realtime semantics) on any engine.

events.py      typed inputs (client, clock, worker) and actions (commands, client outputs)
turns.py       server_vad turn detection with a tentative end for speculation
state.py       the controller's frozen state and phases
controller.py  the pure state machine: (state, event, now) -> (state, actions)
speculative.py commit rate and latency saved by speculative responses
playback.py    what the user has heard of a response (barge-in truncation)
buffer.py      the session's input audio, by absolute sample index
worker.py      transcription, chat and sentence-by-sentence synthesis jobs
session.py     RealtimeSession: runs the controller with real components and threads
"""
