"""End to end on CPU: dataset -> `train_tts` -> the trained LM written into a tiny stack -> the Step TTS path.

The dataset's audio tokens follow a known skewed distribution. Through the real Step TTS path (voice bank,
TTS-3B prompt, sampling, decoder) the generated tokens' histogram must move toward the data's: its total
variation distance to the data histogram falls by a wide margin. Training prompts come from the stack's
speakers folder (`model_path`), so they are exactly the prompts the TTS path builds at inference.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from stepaudio.data.manifest import iter_rows
from stepaudio.decoder.token2wav import Token2Wav
from stepaudio.engines.base import CancelToken
from stepaudio.engines.lazy import Lazy
from stepaudio.engines.lm_backend import GeneratedToken
from stepaudio.engines.step.native_lm import NativeLM
from stepaudio.engines.step.paths import COSYVOICE_DIR, TOKENIZER_DIR, TTS_DIR
from stepaudio.engines.step.tts import StepSynthesizer, TTSSettings
from stepaudio.engines.step.voices import VoiceBank
from stepaudio.lm.generate import GenerationConfig
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer
from stepaudio.tokenizer.interleave import LM_AUDIO_OFFSET
from stepaudio.train.loop import TrainConfig
from stepaudio.train.run import TTSTrainingJob, train_tts

TEXTS = ("今天天气真好。", "(高兴1)我们去公园吧。", "(四川话)这家店的面条很好吃。")


class RecordingLM:
    """The real in-process LM backend, keeping the audio ids it streams (the TTS path decodes them to audio)."""

    def __init__(self, inner: NativeLM) -> None:
        self.inner = inner
        self.audio_ids: list[int] = []

    def stream(self, prompt: Sequence[int] | str, config: GenerationConfig,
               cancel: CancelToken | None = None) -> Iterator[GeneratedToken]:
        for token in self.inner.stream(prompt, config, cancel):
            if token.id is not None and token.id >= LM_AUDIO_OFFSET:
                self.audio_ids.append(token.id - LM_AUDIO_OFFSET)
            yield token


def generated_histogram(stack: Path, model_dir: Path, cap: int = 30) -> Counter[int]:
    """Flow ids the Step TTS path generates for TEXTS with the LM in `model_dir` and the stack's voices/decoder."""
    audio_tokenizer = Lazy(lambda: StepAudioTokenizer.from_pretrained(stack / TOKENIZER_DIR))
    decoder = Lazy(lambda: Token2Wav.from_dir(stack / TTS_DIR / COSYVOICE_DIR))
    recorder = RecordingLM(NativeLM.load(model_dir))
    voices = VoiceBank(audio_tokenizer, decoder, stack / "speakers")
    synth = StepSynthesizer(StepTokenizer(model_dir), lambda: recorder, voices, lambda music: decoder.get(),
                            TTSSettings(seed=0, max_segment_tokens=cap, streaming=False))
    samples = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for text in TEXTS:
            samples += sum(chunk.samples.size for chunk in synth.synthesize(text, "Tingting"))
    assert samples > 0  # the tokens were spoken by the decoder, not only counted
    return Counter(recorder.audio_ids)


def total_variation(a: Counter[int], b: Counter[int]) -> float:
    na, nb = sum(a.values()), sum(b.values())
    assert na and nb
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


def _train_and_compare(dataset: Path, stack: Path, out: Path, steps: int, lr: float) -> dict[str, float]:
    summary = train_tts(TTSTrainingJob(
        dataset=dataset, out=out, init=stack / TTS_DIR, model_path=stack, eval_fraction=0.1,
        train=TrainConfig(steps=steps, batch_size=4, lr=lr, warmup_steps=2, eval_every=steps, save_every=steps,
                          progress=False)))
    data = Counter(t for row in iter_rows(dataset) for t in row.audio_tokens)
    before = total_variation(generated_histogram(stack, stack / TTS_DIR), data)
    after = total_variation(generated_histogram(stack, out / "model"), data)
    result = {"tv_before": before, "tv_after": after, **{k: summary[k] for k in
              ("first_loss", "final_loss", "initial_eval_loss", "final_eval_loss", "steps_per_s")}}
    (out / "distribution.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


def test_short_training_moves_generated_tokens_toward_the_data(dataset: Path, stack: Path, tmp_path: Path) -> None:
    r = _train_and_compare(dataset, stack, tmp_path / "run", steps=8, lr=1e-2)
    assert r["final_loss"] < 0.5 * r["first_loss"]
    assert r["final_eval_loss"] < 0.5 * r["initial_eval_loss"]
    assert r["tv_before"] > 0.9  # the random stack model speaks all over the 5120 ids
    assert r["tv_after"] < r["tv_before"] - 0.3


@pytest.mark.slow
def test_a_few_hundred_steps_match_the_data_distribution(dataset: Path, stack: Path, tmp_path: Path) -> None:
    r = _train_and_compare(dataset, stack, tmp_path / "run", steps=300, lr=3e-3)
    assert r["final_eval_loss"] < 2.0  # the data's entropy per token is about 1.1 nats
    assert r["tv_after"] < 0.25 < 0.9 < r["tv_before"]
