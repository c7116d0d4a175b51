"""The evaluation sets this machine can build from what is installed, for `make eval-report`.

- `zh-synthetic/`: the synthetic Mandarin ASR set (`synthetic_zh`), labelled synthetic.
- `seed-en/`: SEED-TTS-eval layout with *recorded* prompts: the LibriVox and cards recordings of Debian's
  pocketsphinx-testdata (two speakers) with their transcripts, and English target sentences.
- `seed-zh-synthetic/`: SEED-TTS-eval layout with *synthetic* prompts from other espeak Mandarin voice variants
  (m1, m3, f2, f4) than the lite engine's default (f3), and Mandarin targets from the synthetic set's sentences.

    python -m stepaudio.eval.local_sets build/eval-data
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from stepaudio.audio.io import save_audio
from stepaudio.engines.base import Synthesizer
from stepaudio.errors import StepAudioError
from stepaudio.eval.bench.lite import ENGLISH_SENTENCES
from stepaudio.eval.datasets import DatasetError, TtsCase, load_asr_dataset, write_seed_tts
from stepaudio.eval.synthetic_zh import SENTENCES, build_synthetic_zh

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
PROMPT_VOICES = ("cmn+m1", "cmn+m3", "cmn+f2", "cmn+f4")


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


def build_seed_zh(out_dir: Path, synthesizer: Synthesizer, sentences: Sequence[str] = SENTENCES) -> Path:
    """Synthetic prompts from four espeak Mandarin variants; targets are the other half of the sentences."""
    from stepaudio.eval.tts import speak

    half = len(sentences) // 2
    wavs = out_dir / "prompt-wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    cases = []
    for index in range(half):
        voice = PROMPT_VOICES[index % len(PROMPT_VOICES)]
        audio = speak(synthesizer, sentences[index], voice).resampled(16000)
        path = save_audio(wavs / f"prompt-{index:03d}.wav", audio.samples, 16000)
        cases.append(TtsCase(f"zh-{index:03d}", sentences[index], path, sentences[half + index]))
    write_seed_tts(out_dir, cases, language="zh", synthetic=True, name="seed-zh-synthetic",
                   description=f"SYNTHETIC prompts spoken by espeak-ng Mandarin variants {', '.join(PROMPT_VOICES)} "
                               "(not recorded speech); Mandarin target sentences.")
    return out_dir / "meta.lst"


def build_all(out_dir: str | Path, synthesizer: Synthesizer) -> list[Path]:
    root = Path(out_dir)
    return [build_synthetic_zh(root / "zh-synthetic", synthesizer), build_seed_en(root / "seed-en"),
            build_seed_zh(root / "seed-zh-synthetic", synthesizer)]


def main(argv: Sequence[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m stepaudio.eval.local_sets", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.registry import create_engine
    from stepaudio.eval.report import seed_everything

    seed_everything(0)
    try:
        engine = create_engine("lite")
        assert engine.synthesizer is not None
        for path in build_all(args.out_dir, engine.synthesizer):
            print(path)
    except StepAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
