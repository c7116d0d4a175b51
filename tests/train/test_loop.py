"""The optimisation loop on a small-vocabulary Step1 model: learning, exact resume, accumulation, dtypes, LoRA."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from stepaudio.errors import CheckpointError, StepAudioError
from stepaudio.testing.tiny_lm import random_step1, tiny_step1_config
from stepaudio.train.distributed import DistContext
from stepaudio.train.examples import ExampleSet, SpeakerTable, TrainExample
from stepaudio.train.loop import EpochStream, TrainConfig, Trainer, evaluate, lr_factor
from stepaudio.train.lora import LoRAConfig

VOCAB = 300


def _examples(n: int, seed: int = 0) -> tuple[TrainExample, ...]:
    """Prompts of random ids; answers drawn from 4 ids (so there is something to learn)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        prompt = torch.randint(0, VOCAB, (int(torch.randint(6, 14, (1,), generator=g)),), generator=g).tolist()
        answer = torch.tensor([200, 201, 202, 203])[torch.randint(0, 4, (6,), generator=g)].tolist() + [3]
        out.append(TrainExample.of(f"{i:016x}", prompt + answer, len(prompt)))
    return tuple(out)


def _set(n_train: int = 24) -> ExampleSet:
    return ExampleSet(_examples(n_train), _examples(6, seed=1), SpeakerTable({}), {})


def _trainer(out: Path, **overrides) -> Trainer:  # type: ignore[no-untyped-def]
    config = TrainConfig(**{"steps": 6, "batch_size": 4, "lr": 1e-2, "warmup_steps": 2, "eval_every": 3,
                            "save_every": 2, "progress": False, **overrides})
    return Trainer(random_step1(tiny_step1_config(vocab_size=VOCAB), seed=2), _set(), config, out)


def test_lr_schedule_warms_up_then_decays_to_the_floor() -> None:
    assert lr_factor(0, 4, 20, 0.1) == 0.25 and lr_factor(3, 4, 20, 0.1) == 1.0
    assert lr_factor(4, 4, 20, 0.1) == pytest.approx(1.0)
    assert lr_factor(12, 4, 20, 0.1) == pytest.approx(0.55)
    assert lr_factor(20, 4, 20, 0.1) == pytest.approx(0.1) == lr_factor(30, 4, 20, 0.1)


def test_training_lowers_train_and_held_out_loss_and_logs_curves(tmp_path: Path) -> None:
    result = _trainer(tmp_path, steps=12).run()
    assert result.final_loss < 0.6 * result.first_loss
    assert result.final_eval_loss < 0.6 * result.initial_eval_loss
    assert [r.step for r in result.curve] == list(range(13))
    assert (tmp_path / "loss.png").is_file() and result.checkpoint == tmp_path / "checkpoints" / "step-00000012"


def test_an_interrupted_run_resumes_to_exactly_the_uninterrupted_result(tmp_path: Path) -> None:
    straight = _trainer(tmp_path / "a")
    straight.run()

    def interrupt(row) -> None:  # type: ignore[no-untyped-def]
        if row.step == 3:  # after the checkpoint of step 2, before the one of step 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path / "b").run(on_step=interrupt)
    resumed = _trainer(tmp_path / "b")
    result = resumed.run(resume=True)
    assert result.resumed_from == 2
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r.loss for r in resumed.curves.read()][1:] == [r.loss for r in straight.curves.read()][1:]


def test_checkpoints_are_not_overwritten_without_resume_and_resume_keeps_the_setup(tmp_path: Path) -> None:
    _trainer(tmp_path, steps=2).run()
    with pytest.raises(CheckpointError, match="--resume"):
        _trainer(tmp_path, steps=4).run()
    with pytest.raises(CheckpointError, match="different batch_size"):
        _trainer(tmp_path, steps=4, batch_size=2).run(resume=True)


def test_an_accumulated_step_reports_the_token_mean_over_all_its_micro_batches(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, grad_accum=3, batch_size=2)
    peek = EpochStream(trainer.examples.train, 2, trainer.config.seed, trainer.ctx)
    micro = [ex for _ in range(3) for ex in peek.next()]
    expected = evaluate(trainer.wrapped, micro, trainer.config)
    loss, _, tokens = trainer.train_step()
    assert tokens == sum(e.target_tokens for e in micro)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert trainer.stream.index == 3


def test_bf16_autocast_with_activation_checkpointing_learns(tmp_path: Path) -> None:
    result = _trainer(tmp_path, steps=8, dtype="bf16", activation_checkpointing=True).run()
    assert math.isfinite(result.final_loss) and result.final_loss < 0.7 * result.first_loss
    assert next(iter(_trainer(tmp_path / "x").model.parameters())).dtype == torch.float32  # fp32 masters


def test_lora_training_changes_only_the_adapters(tmp_path: Path) -> None:
    base = random_step1(tiny_step1_config(vocab_size=VOCAB), seed=2)
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    config = TrainConfig(steps=10, batch_size=4, lr=3e-2, warmup_steps=1, eval_every=10, save_every=10,
                         progress=False, lora=LoRAConfig(rank=4, targets=("q_proj", "v_proj", "lm_head")))
    trainer = Trainer(base, _set(), config, tmp_path)
    result = trainer.run()
    assert result.final_loss < 0.8 * result.first_loss
    assert result.trainable_params < 0.2 * result.total_params
    state = trainer.model.state_dict()
    for key, value in frozen.items():
        wrapped = key.replace("q_proj.weight", "q_proj.base.weight").replace("v_proj.weight", "v_proj.base.weight")
        wrapped = wrapped.replace("lm_head.weight", "lm_head.base.weight")
        torch.testing.assert_close(state[wrapped], value, rtol=0, atol=0)
    assert (tmp_path / "checkpoints" / "step-00000010" / "adapter" / "adapter_model.safetensors").is_file()


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(StepAudioError, match="dtype"):
        TrainConfig(dtype="fp8")
    with pytest.raises(StepAudioError, match="grad-accum"):
        TrainConfig(grad_accum=0)
    with pytest.raises(StepAudioError, match="too few"):
        EpochStream(_examples(0), 4, 0, DistContext())

