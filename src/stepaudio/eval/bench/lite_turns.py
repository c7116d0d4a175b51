"""Spoken turns for `stepaudio bench lite`: the questions (English spoken by Piper, Mandarin from
examples/questions-zh), one turn through the turn service with its stage timings, and the silence a voice opens
with. Shared by the latency part and the Kokoro comparison (`lite_kokoro`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The repository's synthetic spoken Mandarin questions (absent from an installed wheel: that part then skips).
QUESTIONS_ZH = Path(__file__).resolve().parents[4] / "examples" / "questions-zh"
QUESTIONS = (
    "What is the capital of France?",
    "How many days are there in a week?",
    "What color is the sky on a clear day?",
    "Can you recommend a good book to read?",
    "What is the tallest mountain in the world?",
    "How do I make a cup of tea?",
    "Why do cats purr?",
    "What should I cook for dinner tonight?",
)


def zh_questions() -> list[dict[str, str]]:
    manifest = QUESTIONS_ZH / "manifest.jsonl"
    return [json.loads(line) for line in manifest.read_text("utf-8").splitlines()] if manifest.is_file() else []


def spoken_questions(engine: Any, count: int, zh_count: int) -> list[tuple[str, str, Any]]:
    """(language, question, 16 kHz audio with 0.3 s of silence either side): English spoken by Piper, Mandarin
    from examples/questions-zh."""
    import numpy as np

    from stepaudio.audio.io import Audio, load_audio, resample

    silence = np.zeros(4800, dtype=np.float32)
    spoken: list[tuple[str, str, Audio]] = []
    for question in QUESTIONS[:count]:
        chunks = list(engine.synthesizer.synthesize(question, "joe"))
        speech = resample(np.concatenate([c.samples for c in chunks]), chunks[0].sample_rate, 16000)
        spoken.append(("en", question, Audio(np.concatenate([silence, speech, silence]), 16000)))
    for item in zh_questions()[:zh_count]:
        speech = load_audio(QUESTIONS_ZH / item["audio"], sample_rate=16000).samples
        spoken.append(("zh", item["text"], Audio(np.concatenate([silence, speech, silence]), 16000)))
    return spoken


def spoken_turn(engine: Any, vad: Any, language: str, question: str, audio: Any, settings: Any) -> dict[str, Any]:
    """One spoken turn through the turn service: what was heard and replied, and its stage timings."""
    from stepaudio.realtime.turn import Conversation, ReplyAudio, ReplyText, TurnDone, UserHeard

    conversation = Conversation(engine, settings, trimmer=vad)
    transcript, reply, timings, lead = "", "", None, None
    for event in conversation.turn(audio=audio):
        if isinstance(event, UserHeard):
            transcript = event.text
        elif isinstance(event, ReplyText):
            reply += event.text
        elif isinstance(event, ReplyAudio) and lead is None and event.chunk.samples.size:
            lead = leading_silence(event.chunk.samples, event.chunk.sample_rate)
        elif isinstance(event, TurnDone):
            timings = event.timings
    assert timings is not None
    row = {"language": language, "question": question, "heard": transcript, "reply": reply.strip(),
           **{name: value for name, value in timings.rows()}}
    first = row["TTS first audio"]
    row["first audible"] = None if first is None or lead is None else float(first) + lead
    return row


def leading_silence(samples: Any, rate: int, audible: float = 0.01) -> float:
    """Seconds before the first sample above `audible` (-40 dBFS): a voice that opens every sentence with
    silence is heard that much after its first audio arrives."""
    import numpy as np

    loud = np.flatnonzero(np.abs(samples) > audible)
    return (int(loud[0]) if loud.size else len(samples)) / rate


def greedy() -> Any:
    """Greedy decoding: the same reply on every path compared."""
    from stepaudio.engines.base import GenerationOptions

    return GenerationOptions(temperature=0.0, seed=0)
