"""The evaluation sets this machine can build from what is installed, for `make eval-report`.

- `zh-synthetic/`: the synthetic Mandarin ASR set (`synthetic_zh`, Kokoro voices), labelled synthetic.
- `seed-en/`: SEED-TTS-eval layout with *recorded* prompts: the LibriVox and cards recordings of Debian's
  pocketsphinx-testdata (two speakers) with their transcripts, and English target sentences.
- `seed-zh-synthetic/`, `seed-ja-synthetic/`: SEED-TTS-eval layout with *synthetic* prompts spoken by other
  Kokoro voices of the language than the lite engine's default, and targets from the other half of the
  sentences.

The spoken Mandarin questions in `examples/questions-zh/` (the tests' and `make eval-report`'s) are written by
`--questions-zh`; Kokoro is deterministic, so a rebuild gives the same audio on the same packages.

    python -m stepaudio.eval.local_sets build/eval-data
    python -m stepaudio.eval.local_sets --questions-zh examples/questions-zh
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from stepaudio.audio.io import save_audio
from stepaudio.engines.base import Synthesizer
from stepaudio.errors import StepAudioError
from stepaudio.eval.bench.lite import ENGLISH_SENTENCES, JAPANESE_SENTENCES
from stepaudio.eval.datasets import DatasetError, TtsCase, load_asr_dataset, write_seed_tts
from stepaudio.eval.synthetic_zh import GENERATOR, SENTENCES, build_synthetic_zh

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
# Prompt speakers: Kokoro voices of the language other than the engine's default (zh-yunjian, ja-alpha).
PROMPT_VOICES = {"zh": ("zh-xiaobei", "zh-yunxi", "zh-xiaoyi", "zh-yunyang"),
                 "ja": ("ja-gongitsune", "ja-nezumi", "ja-tebukuro", "ja-kumo")}
# Spoken Mandarin questions, one voice each (three men, three women): what a user asks the voice assistant.
ZH_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("中国的首都是哪个城市？", "zh-yunjian"),
    ("一个星期有几天？", "zh-xiaobei"),
    ("天空为什么是蓝色的？", "zh-yunxi"),
    ("世界上最高的山叫什么名字？", "zh-xiaoyi"),
    ("你能给我推荐一本好书吗？", "zh-yunyang"),
    ("今天晚饭我应该做什么菜？", "zh-xiaoxiao"),
)


def build_seed_en(out_dir: Path, testdata: Path = TESTDATA, targets: Sequence[str] = ENGLISH_SENTENCES) -> Path:
    """Recorded prompts (LibriVox, cards) copied under `prompt-wavs/`, one English target sentence each."""
    prompts = []
    for folder in ("librivox", "cards"):
        prompts += list(load_asr_dataset(testdata / folder, "sphinx").utterances)
    if not prompts:
        raise DatasetError(f"no prompt recordings under {testdata}")
    wavs = out_dir / "prompt-wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    cases = []
    for index, (utt, target) in enumerate(zip(prompts, targets, strict=False)):
        copy = wavs / utt.audio.name
        shutil.copyfile(utt.audio, copy)
        cases.append(TtsCase(f"en-{index:03d}", utt.text, copy, target))
    write_seed_tts(out_dir, cases, language="en", synthetic=False, name="seed-en",
                   description="Recorded prompts: LibriVox and cards recordings of Debian pocketsphinx-testdata "
                               "(two speakers); target sentences from `stepaudio bench lite`.")
    return out_dir / "meta.lst"


def build_seed_synthetic(out_dir: Path, synthesizer: Synthesizer, language: str, sentences: Sequence[str]) -> Path:
    """Prompts spoken by `PROMPT_VOICES[language]` in turn from the first half of `sentences`; targets are the
    other half (so no target was heard as a prompt)."""
    from stepaudio.eval.tts import speak

    voices = PROMPT_VOICES[language]
    half = len(sentences) // 2
    wavs = out_dir / "prompt-wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    cases = []
    for index in range(half):
        audio = speak(synthesizer, sentences[index], voices[index % len(voices)]).resampled(16000)
        path = save_audio(wavs / f"prompt-{index:03d}.wav", audio.samples, 16000)
        cases.append(TtsCase(f"{language}-{index:03d}", sentences[index], path, sentences[half + index]))
    name = f"seed-{language}-synthetic"
    write_seed_tts(out_dir, cases, language=language, synthetic=True, name=name,
                   description=f"SYNTHETIC prompts spoken by {GENERATOR}, voices {', '.join(voices)} (not recorded "
                               f"speech); {'Mandarin' if language == 'zh' else 'Japanese'} target sentences.")
    return out_dir / "meta.lst"


def build_zh_questions(out_dir: str | Path, synthesizer: Synthesizer,
                       questions: Sequence[tuple[str, str]] = ZH_QUESTIONS) -> Path:
    """`q1.wav`... (16 kHz) with `manifest.jsonl` and `dataset.json`, labelled synthetic. The lines carry no
    language, so an evaluation detects it, as a spoken turn does."""
    from stepaudio.eval.tts import speak

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, (text, voice) in enumerate(questions, 1):
        audio = speak(synthesizer, text, voice).resampled(16000)
        save_audio(root / f"q{index}.wav", audio.samples, 16000)
        lines.append(json.dumps({"id": f"q{index}", "audio": f"q{index}.wav", "text": text, "voice": voice,
                                 "synthetic": True, "generator": f"{GENERATOR} ({voice})"}, ensure_ascii=False))
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    info = {"name": "questions-zh", "synthetic": True,
            "description": f"SYNTHETIC: {len(lines)} spoken Mandarin questions made with {GENERATOR} (one voice "
                           "each; not recorded speech). No language is given: Whisper detects it."}
    (root / "dataset.json").write_text(json.dumps(info, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return manifest


def build_all(out_dir: str | Path, synthesizer: Synthesizer) -> list[Path]:
    root = Path(out_dir)
    return [build_synthetic_zh(root / "zh-synthetic", synthesizer), build_seed_en(root / "seed-en"),
            build_seed_synthetic(root / "seed-zh-synthetic", synthesizer, "zh", SENTENCES),
            build_seed_synthetic(root / "seed-ja-synthetic", synthesizer, "ja", JAPANESE_SENTENCES)]


def main(argv: Sequence[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m stepaudio.eval.local_sets", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", nargs="?", help="build every set under this folder")
    parser.add_argument("--questions-zh", metavar="DIR", help="write the spoken Mandarin questions here instead")
    args = parser.parse_args(argv)
    if bool(args.out_dir) == bool(args.questions_zh):
        parser.error("give either OUT_DIR or --questions-zh DIR")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.registry import create_engine
    from stepaudio.eval.report import seed_everything

    seed_everything(0)
    try:
        engine = create_engine("lite")
        assert engine.synthesizer is not None
        built = [build_zh_questions(args.questions_zh, engine.synthesizer)] if args.questions_zh \
            else build_all(args.out_dir, engine.synthesizer)
        for path in built:
            print(path)
    except StepAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
