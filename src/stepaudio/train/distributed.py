"""torch.distributed for multi-GPU training: process group from the torchrun environment, DDP / FSDP wrap,
batch sharding, loss reduction.

Under `torchrun --nproc-per-node N stepaudio train tts ...` every process reads RANK / WORLD_SIZE /
LOCAL_RANK, joins one group (NCCL on GPUs, gloo on CPU), takes every N-th micro-batch of the same
seeded epoch order, and only rank 0 writes checkpoints, curves and the final model. Without those
variables it is a plain single process and nothing is initialised.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from stepaudio.errors import StepAudioError

T = TypeVar("T")
STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised: bool = False  # whether this process joined (and must leave) a process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "cpu") -> DistContext:
    """Join the torchrun process group when the environment names one, else a single-process context."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistContext(device=torch.device(device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    on_gpu = device.startswith("cuda")
    if on_gpu:
        if not torch.cuda.is_available():
            raise StepAudioError("--device cuda was asked for but no CUDA device is available")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_gpu else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local, torch.device(f"cuda:{local}" if on_gpu else "cpu"), True)


def shard(batches: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's share of one epoch: every world_size-th item; the tail that not every rank gets is dropped."""
    usable = len(batches) - len(batches) % ctx.world_size
    return list(batches[ctx.rank : usable : ctx.world_size])


def wrap(module: nn.Module, ctx: DistContext, strategy: str = "ddp") -> nn.Module:
    """DDP (replicated weights; the default, enough for LoRA and for TTS-3B full fine-tuning on 80 GB cards)
    or FSDP (sharded weights, gradients and Adam states; GPUs only), over the layer blocks."""
    if not ctx.initialised:
        return module
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
        # The only buffers are the constant ALiBi slopes: no need to broadcast them on every forward.
        return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)
    if strategy == "fsdp":
        if ctx.device.type != "cuda":
            raise StepAudioError("FSDP here shards over GPUs; use --strategy ddp on CPU")
        import functools

        from torch.distributed.fsdp import FullyShardedDataParallel, MixedPrecision
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

        from stepaudio.lm.step1.model import Step1Layer

        policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={Step1Layer})
        return FullyShardedDataParallel(module, auto_wrap_policy=policy, device_id=ctx.device,
                                        use_orig_params=True,
                                        mixed_precision=MixedPrecision(param_dtype=torch.bfloat16,
                                                                       reduce_dtype=torch.float32))
    raise StepAudioError(f"unknown distributed strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.initialised and ctx.world_size > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(ctx: DistContext) -> None:
    if ctx.initialised:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.initialised and dist.is_initialized():
        dist.destroy_process_group()
