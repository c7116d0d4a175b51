"""Checkpoints are atomic: an interrupted write never replaces or impersonates a complete one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stepaudio.train import checkpoint as ckpt


def _state(step: int) -> ckpt.TrainerState:
    return ckpt.TrainerState(step=step, epoch=0, batch_index=step, optimizer={"x": torch.ones(2) * step},
                             scheduler={}, rng=ckpt.rng_state(), config={"seed": 0})


def _weights(step: int):  # type: ignore[no-untyped-def]
    def write(directory: Path) -> None:
        (directory / "model").mkdir()
        (directory / "model" / "w.txt").write_text(str(step))

    return write


def test_newest_complete_checkpoint_wins_and_old_ones_are_pruned(tmp_path: Path) -> None:
    for step in (10, 20, 30):
        ckpt.save_checkpoint(tmp_path, _state(step), _weights(step), keep=2)
    assert [p.name for p in ckpt.complete_checkpoints(tmp_path)] == ["step-00000020", "step-00000030"]
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest is not None and (latest / "model" / "w.txt").read_text() == "30"
    state = ckpt.load_trainer_state(latest)
    assert state.step == 30 and torch.equal(state.optimizer["x"], torch.ones(2) * 30)


def test_a_write_that_fails_leaves_no_checkpoint_and_keeps_the_previous(tmp_path: Path) -> None:
    ckpt.save_checkpoint(tmp_path, _state(10), _weights(10))

    def crash(directory: Path) -> None:
        (directory / "model").mkdir()
        (directory / "model" / "half.bin").write_bytes(b"x" * 100)
        raise KeyboardInterrupt  # killed mid-write

    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, _state(20), crash)
    assert [p.name for p in ckpt.complete_checkpoints(tmp_path)] == ["step-00000010"]
    assert not any(p.name.startswith("step-00000020") for p in (tmp_path / ckpt.CHECKPOINTS).iterdir())


def test_directories_without_a_valid_marker_are_never_resumed(tmp_path: Path) -> None:
    ckpt.save_checkpoint(tmp_path, _state(10), _weights(10))
    root = tmp_path / ckpt.CHECKPOINTS
    (root / "step-00000050").mkdir()  # no COMPLETE: e.g. copied by hand, half done
    (root / "step-00000060").mkdir()
    (root / "step-00000060" / ckpt.TRAINER_STATE).write_bytes(b"")
    (root / "step-00000060" / ckpt.COMPLETE).write_text(json.dumps({"step": 70}))  # marker of another step
    leftover = root / f"{ckpt.PARTIAL_PREFIX}step-00000070-123"
    leftover.mkdir()
    assert ckpt.latest_checkpoint(tmp_path) == root / "step-00000010"
    assert ckpt.remove_partials(tmp_path) == 1 and not leftover.exists()


def test_publish_replaces_an_existing_folder_only_when_the_new_one_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "model"
    ckpt.publish_dir(target, lambda d: (d / "a.txt").write_text("old"))

    def broken(directory: Path) -> None:
        (directory / "a.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.publish_dir(target, broken)
    assert (target / "a.txt").read_text() == "old"
    ckpt.publish_dir(target, lambda d: (d / "a.txt").write_text("new"))
    assert (target / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
