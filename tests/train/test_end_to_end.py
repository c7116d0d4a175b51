"""End to end on CPU: dataset -> `train_tts` -> the trained LM written into a tiny stack -> the Step TTS path.

The dataset's audio tokens follow a known skewed distribution. Through the real Step TTS path (voice bank,
TTS-3B prompt, sampling, decoder) the generated tokens' histogram must move toward the data's: its total
variation distance to the data histogram falls by a wide margin. Training prompts come from the stack's
speakers folder (`model_path`), so they are exactly the prompts the TTS path builds at inference.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from stepaudio.data.manifest import iter_rows
from stepaudio.engines.step.paths import TTS_DIR
from stepaudio.train.loop import TrainConfig
from stepaudio.train.run import TTSTrainingJob, train_tts

TEXTS = ("今天天气真好。", "(高兴1)我们去公园吧。", "(四川话)这家店的面条很好吃。")

def _train_and_compare(dataset: Path, stack: Path, out: Path, steps: int, lr: float, tts,  # type: ignore[no-untyped-def]
                       texts: tuple[str, ...] = TEXTS, cap: int = 30, batch_size: int = 4) -> dict[str, float]:
    summary = train_tts(TTSTrainingJob(
        dataset=dataset, out=out, init=stack / TTS_DIR, model_path=stack, eval_fraction=0.1,
        train=TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=2, eval_every=steps, save_every=steps,
                          progress=False)))
    data = Counter(t for row in iter_rows(dataset) for t in row.audio_tokens)
    generated_before = tts.histogram(stack, stack / TTS_DIR, texts, cap=cap)
    generated_after = tts.histogram(stack, out / "model", texts, cap=cap)
    before = tts.total_variation(generated_before, data)
    after = tts.total_variation(generated_after, data)
    result = {"tv_before": before, "tv_after": after, "tokens_before": sum(generated_before.values()),
              "tokens_after": sum(generated_after.values()), **{k: summary[k] for k in
              ("first_loss", "final_loss", "initial_eval_loss", "final_eval_loss", "steps_per_s")}}
    (out / "distribution.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


def test_short_training_moves_generated_tokens_toward_the_data(
        dataset: Path, stack: Path, tmp_path: Path, tts) -> None:  # type: ignore[no-untyped-def]
    r = _train_and_compare(dataset, stack, tmp_path / "run", steps=16, lr=5e-3, tts=tts, batch_size=2, texts=TEXTS[:2])
    assert r["final_loss"] < 0.5 * r["first_loss"]
    assert r["final_eval_loss"] < 0.5 * r["initial_eval_loss"]
    assert r["tv_before"] > 0.9  # the random stack model speaks all over the 5120 ids
    assert r["tv_after"] < r["tv_before"] - 0.3
    assert r["tokens_after"] >= 40  # enough generated tokens for the distance to mean something


@pytest.mark.slow
def test_a_few_hundred_steps_match_the_data_distribution(
        make_dataset, stack: Path, tmp_path: Path, tts) -> None:  # type: ignore[no-untyped-def]
    dataset = make_dataset(tmp_path / "data", n_rows=160, seed=1)  # enough rows not to memorise them
    r = _train_and_compare(dataset, stack, tmp_path / "run", steps=300, lr=3e-3, tts=tts)
    assert r["final_eval_loss"] < 2.0  # the data's entropy is 1.17 nats per audio token
    assert r["tv_after"] < 0.25 < 0.9 < r["tv_before"]
