"""A small synthetic Mandarin ASR set, spoken by the lite engine's Kokoro-82M Mandarin voices.

No recorded Chinese speech is installable here (MODELS.md), so this set exercises the CER path end to end
(numbers, punctuation, simplified script) on speech that Whisper can read. It is labelled synthetic in its
manifest lines and its `dataset.json`, and reports carry the label: neural TTS read by Whisper base measures
the pipeline and the voices' intelligibility, not how well anything recognises human Mandarin.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from stepaudio.audio.io import save_audio
from stepaudio.engines.base import Synthesizer
from stepaudio.eval.bench.lite import MANDARIN_SENTENCES
from stepaudio.eval.report import progress

SAMPLE_RATE = 16000
# The bench's everyday sentences plus ones with digits, a measure word and a question, for the normaliser.
SENTENCES: tuple[str, ...] = MANDARIN_SENTENCES + (
    "我家有3口人。",
    "这件衣服一百二十块钱。",
    "火车下午4点到北京。",
    "请问图书馆在哪里？",
    "孩子们在操场上踢足球。",
    "妈妈做的饭菜特别好吃。",
    "外面下雨了，记得带伞。",
    "我们班一共有40个学生。",
)
# Two men and two women, taken in turn (the four Mandarin voices MODELS.md measured at <= 1.8 % CER).
VOICES = ("zh-yunjian", "zh-xiaobei", "zh-yunxi", "zh-xiaoyi")
GENERATOR = "Kokoro-82M v1.0 via the stepaudio lite engine"


def build_synthetic_zh(out_dir: str | Path, synthesizer: Synthesizer, *, voices: Sequence[str] = VOICES,
                       sentences: Sequence[str] = SENTENCES, show_progress: bool = True) -> Path:
    """Write `out_dir/wavs/zh-NNN.wav` (16 kHz), `manifest.jsonl` and `dataset.json`; returns the manifest."""
    from stepaudio.eval.tts import speak

    root = Path(out_dir)
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    lines = []
    items = progress(list(enumerate(sentences)), "synthetic zh", len(sentences)) if show_progress \
        else enumerate(sentences)
    for index, sentence in items:
        voice = voices[index % len(voices)]
        audio = speak(synthesizer, sentence, voice).resampled(SAMPLE_RATE)
        name = f"zh-{index:03d}"
        save_audio(root / "wavs" / f"{name}.wav", audio.samples, SAMPLE_RATE)
        lines.append(json.dumps({"id": name, "audio": f"wavs/{name}.wav", "text": sentence, "language": "zh",
                                 "synthetic": True, "generator": f"{GENERATOR} ({voice})"}, ensure_ascii=False))
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    info = {"name": root.name, "language": "zh", "synthetic": True,
            "description": f"SYNTHETIC: {len(lines)} Mandarin sentences spoken by {GENERATOR} (voices "
                           f"{', '.join(voices[:len(lines)])}, in turn); not recorded speech."}
    (root / "dataset.json").write_text(json.dumps(info, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return manifest
