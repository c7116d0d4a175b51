"""torch.distributed on CPU (gloo): one process through DDP trains exactly as without it; two processes agree."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from stepaudio.testing.tiny_lm import random_step1, tiny_step1_config
from stepaudio.train.distributed import DistContext, init_distributed, shard, shutdown
from stepaudio.train.examples import ExampleSet, SpeakerTable, TrainExample
from stepaudio.train.loop import TrainConfig, Trainer, TrainResult

VOCAB = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _examples(n: int) -> tuple[TrainExample, ...]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        prompt = torch.randint(0, VOCAB, (8 + i % 5,), generator=g).tolist()
        answer = torch.tensor([200, 201, 202])[torch.randint(0, 3, (5,), generator=g)].tolist() + [3]
        out.append(TrainExample.of(f"{i:016x}", prompt + answer, len(prompt)))
    return tuple(out)


def _run(out: Path, ctx: DistContext | None, steps: int = 4, n_eval: int = 4) -> tuple[Trainer, TrainResult]:
    config = TrainConfig(steps=steps, batch_size=2, lr=1e-2, warmup_steps=1, eval_every=steps, save_every=2,
                         progress=False)
    data = ExampleSet(_examples(16), _examples(n_eval), SpeakerTable({}), {})
    trainer = Trainer(random_step1(tiny_step1_config(vocab_size=VOCAB), seed=3), data, config, out, ctx)
    return trainer, trainer.run()


def _env(monkeypatch: pytest.MonkeyPatch, rank: int, world: int, port: int) -> None:
    for key, value in {"RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": rank, "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": port}.items():
        monkeypatch.setenv(key, str(value))


def test_without_torchrun_nothing_is_initialised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed("cpu")
    assert not ctx.initialised and ctx.is_main and ctx.world_size == 1


def test_shard_gives_each_rank_an_equal_disjoint_share() -> None:
    items = list(range(11))
    shares = [shard(items, DistContext(rank=r, world_size=3)) for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_single_process_gloo_ddp_matches_plain_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain, _ = _run(tmp_path / "plain", None)
    _env(monkeypatch, 0, 1, _free_port())
    ctx = init_distributed("cpu")
    try:
        assert ctx.initialised and torch.distributed.get_backend() == "gloo"
        ddp, _ = _run(tmp_path / "ddp", ctx)
        assert type(ddp.wrapped).__name__ == "DistributedDataParallel"
    finally:
        shutdown(ctx)
    for a, b in zip(plain.model.parameters(), ddp.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert (tmp_path / "ddp" / "checkpoints" / "step-00000004" / "model" / "model.safetensors").is_file()


def _worker(rank: int, world: int, port: int, out: str, results: dict) -> None:  # type: ignore[type-arg]
    import os

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        trainer, result = _run(Path(out), ctx, n_eval=5)  # 3 + 2 held-out rows: unequal shares must not hang
        results[rank] = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        results[f"eval{rank}"] = result.final_eval_loss
    finally:
        shutdown(ctx)


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_weights_and_only_rank_0_writes(tmp_path: Path) -> None:
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), results), nprocs=2, join=True)
    torch.testing.assert_close(results[0], results[1])
    assert results["eval0"] == results["eval1"] and results["eval0"] > 0
    assert (tmp_path / "checkpoints" / "step-00000004" / "COMPLETE").is_file()
    assert len(list((tmp_path / "checkpoints").iterdir())) == 2  # step 2 and 4, no partial leftovers
