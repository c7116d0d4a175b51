"""Atomic, resumable training checkpoints.

```
OUT/checkpoints/step-00000200/       a complete checkpoint (only complete ones carry this name)
    model/          full fine-tuning: the weights as a Hugging Face Step1 folder (save_step1)
    adapter/        LoRA: adapter_model.safetensors + adapter_config.json
    trainer.pt      optimiser, scheduler, step, epoch, batch position, RNG states
    COMPLETE        written last: {"step": 200}
OUT/checkpoints/.partial-step-00000200-<pid>/   being written; never read, removed on the next start
```
A checkpoint is written into a partial directory, flushed, marked COMPLETE and only then renamed into
place with `os.replace`, so a kill at any moment leaves the previous checkpoints untouched and never a
half-written one under a final name. The same `publish_dir` writes the final model folders.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stepaudio.errors import CheckpointError

CHECKPOINTS = "checkpoints"
COMPLETE = "COMPLETE"
TRAINER_STATE = "trainer.pt"
PARTIAL_PREFIX = ".partial-"
_NAME = re.compile(r"^step-(\d{8})$")


@dataclass(frozen=True)
class TrainerState:
    """Where the run stands: what `--resume` needs beyond the weights."""

    step: int
    epoch: int
    batch_index: int  # next micro-batch of this epoch's order
    optimizer: Mapping[str, Any]
    scheduler: Mapping[str, Any]
    rng: Mapping[str, Any]
    config: Mapping[str, Any]


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(directory: Path) -> None:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_dir(target: str | Path, write: Callable[[Path], object]) -> Path:
    """Run `write(tmp)` into a partial sibling directory, then move it to `target` in one rename.

    An existing `target` is moved aside first and deleted only after the new one is in place.
    """
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.parent / f"{PARTIAL_PREFIX}{final.name}-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        write(partial)
        _fsync_tree(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f"{PARTIAL_PREFIX}{final.name}-old-{os.getpid()}"
        os.replace(final, old)
    os.replace(partial, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def save_checkpoint(out_dir: str | Path, state: TrainerState, write_weights: Callable[[Path], None],
                    keep: int = 2) -> Path:
    """Write one complete checkpoint (weights by `write_weights(dir)`), then drop all but the newest `keep`."""
    root = Path(out_dir) / CHECKPOINTS

    def write(tmp: Path) -> None:
        write_weights(tmp)
        torch.save({"step": state.step, "epoch": state.epoch, "batch_index": state.batch_index,
                    "optimizer": dict(state.optimizer), "scheduler": dict(state.scheduler),
                    "rng": dict(state.rng), "config": dict(state.config)}, tmp / TRAINER_STATE)
        (tmp / COMPLETE).write_text(json.dumps({"step": state.step}) + "\n")

    path = publish_dir(root / checkpoint_name(state.step), write)
    for stale in complete_checkpoints(out_dir)[:-max(keep, 1)]:
        shutil.rmtree(stale, ignore_errors=True)
    return path


def complete_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (a directory without a matching COMPLETE marker is ignored)."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for path in root.iterdir():
        match = _NAME.match(path.name)
        if not match or not (path / COMPLETE).is_file() or not (path / TRAINER_STATE).is_file():
            continue
        try:
            marked = json.loads((path / COMPLETE).read_text())["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        if marked == int(match.group(1)):
            found.append((marked, path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    done = complete_checkpoints(out_dir)
    return done[-1] if done else None


def remove_partials(out_dir: str | Path) -> int:
    """Delete leftovers of interrupted writes (they are never resumed from); returns how many."""
    removed = 0
    for parent in (Path(out_dir), Path(out_dir) / CHECKPOINTS):
        if parent.is_dir():
            for path in parent.iterdir():
                if path.name.startswith(PARTIAL_PREFIX) and path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                    removed += 1
    return removed


def load_trainer_state(checkpoint: str | Path) -> TrainerState:
    path = Path(checkpoint) / TRAINER_STATE
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"{path}: cannot read the trainer state ({exc})") from exc
    return TrainerState(step=int(data["step"]), epoch=int(data["epoch"]), batch_index=int(data["batch_index"]),
                        optimizer=data["optimizer"], scheduler=data["scheduler"], rng=data["rng"],
                        config=data["config"])
