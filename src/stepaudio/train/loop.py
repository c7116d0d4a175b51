"""The optimisation loop: AdamW, linear warmup then cosine decay, gradient accumulation and clipping,
bf16 autocast (fp32 master weights) or fp32, optional activation checkpointing, held-out loss, atomic
checkpoints and exact resume (weights, optimiser, scheduler, RNG and the position in the epoch order).

The loss is the token-mean cross-entropy over the audio answer of every example in one optimiser step
(all micro-batches, all ranks), so gradient accumulation and the number of GPUs do not change it.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from stepaudio.errors import CheckpointError, StepAudioError
from stepaudio.lm.step1.loading import load_step1
from stepaudio.lm.step1.model import Step1ForCausalLM
from stepaudio.train import checkpoint as ckpt
from stepaudio.train.batching import bucketed_batches, collate
from stepaudio.train.curves import PNG_NAME, CurveLog, CurveRow, plot
from stepaudio.train.distributed import DistContext, all_reduce_sum, barrier, shard, wrap
from stepaudio.train.examples import ExampleSet, TrainExample
from stepaudio.train.forward import TTSLossModule
from stepaudio.train.lora import LoRAConfig, apply_lora, load_adapters, save_adapters

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
_RESUME_KEYS = ("batch_size", "grad_accum", "seed", "lora", "dtype")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    batch_size: int = 4  # examples per micro-batch per process
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    dtype: str = "fp32"  # "bf16": autocast with fp32 master weights (LoRA: the frozen base in bf16)
    activation_checkpointing: bool = False
    seed: int = 0
    eval_every: int = 100
    save_every: int = 100
    keep_checkpoints: int = 2
    device: str = "cpu"
    strategy: str = "ddp"
    lora: LoRAConfig | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise StepAudioError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "save_every"):
            if getattr(self, name) < 1:
                raise StepAudioError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lora is not None and self.strategy == "fsdp":
            raise StepAudioError("LoRA trains few parameters: use --strategy ddp (FSDP is for full fine-tuning)")
        if not self.lr > 0:
            raise StepAudioError(f"learning rate must be positive, got {self.lr}")


@dataclass(frozen=True)
class TrainResult:
    steps: int
    first_loss: float
    final_loss: float
    initial_eval_loss: float
    final_eval_loss: float
    steps_per_s: float
    target_tokens_per_s: float
    trainable_params: int
    total_params: int
    checkpoint: Path | None
    resumed_from: int = 0
    curve: list[CurveRow] = field(default_factory=list, repr=False)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine down to `min_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class EpochStream:
    """Micro-batches in a reproducible order: epoch e is `bucketed_batches(seed, e)` sharded to this rank."""

    def __init__(self, examples: Sequence[TrainExample], batch_size: int, seed: int, ctx: DistContext,
                 epoch: int = 0, index: int = 0) -> None:
        self.examples, self.batch_size, self.seed, self.ctx = examples, batch_size, seed, ctx
        self.epoch, self.index = epoch, index
        self._order = self._epoch_order()
        if not self._order:
            raise StepAudioError(f"{len(examples)} training examples are too few for batch size {batch_size} "
                                 f"on {ctx.world_size} process(es)")

    def _epoch_order(self) -> list[list[int]]:
        lengths = [len(e) for e in self.examples]
        return shard(bucketed_batches(lengths, self.batch_size, seed=self.seed, epoch=self.epoch), self.ctx)

    def next(self) -> list[TrainExample]:
        if self.index >= len(self._order):
            self.epoch, self.index = self.epoch + 1, 0
            self._order = self._epoch_order()
        batch = self._order[self.index]
        self.index += 1
        return [self.examples[i] for i in batch]


def prepare_model(model: Step1ForCausalLM, config: TrainConfig) -> Step1ForCausalLM:
    """Make the right parameters trainable: everything (full), or fresh LoRA adapters only."""
    if config.lora is not None:
        apply_lora(model, config.lora, seed=config.seed)
    else:
        for param in model.parameters():
            param.requires_grad_(True)
    return model.to(config.device).train()


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=(0.9, 0.95), eps=1e-8,
                             fused=True)


def _autocast(config: TrainConfig) -> contextlib.AbstractContextManager[Any]:
    if config.dtype == "bf16":
        return torch.autocast(device_type=torch.device(config.device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate(module: nn.Module, examples: Sequence[TrainExample], config: TrainConfig,
             ctx: DistContext | None = None) -> float:
    """Token-mean loss over `examples` (nan when there are none); in eval mode, no gradients.

    Every rank runs the same number of forward calls (FSDP gathers weights in each one): a rank whose
    share is shorter repeats its first batch and discards the result.
    """
    ctx = ctx or DistContext()
    if not examples:
        return math.nan
    was_training = module.training
    module.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=config.device)
    real = list(examples[ctx.rank :: ctx.world_size])
    mine = real or [examples[0]]
    per_rank = math.ceil(len(examples) / ctx.world_size)
    calls = math.ceil(per_rank / config.batch_size)
    with torch.no_grad(), _autocast(config):
        for call in range(calls):
            chunk = real[call * config.batch_size : (call + 1) * config.batch_size]
            batch = collate(chunk or mine[: config.batch_size]).to(config.device)
            loss, count = module(batch.input_ids, batch.valid, batch.labels)
            if chunk:
                totals += torch.stack([loss.double(), count.double()])
    all_reduce_sum(totals, ctx)
    module.train(was_training)
    return float(totals[0] / totals[1]) if totals[1] > 0 else math.nan


class Trainer:
    """One training run writing into `out_dir` (checkpoints/, loss.csv, loss.png)."""

    def __init__(self, model: Step1ForCausalLM, examples: ExampleSet, config: TrainConfig, out_dir: str | Path,
                 ctx: DistContext | None = None) -> None:
        self.config, self.examples, self.out = config, examples, Path(out_dir)
        self.ctx = ctx or DistContext(device=torch.device(config.device))
        _seed(config.seed)
        self.model = prepare_model(model, config)
        self.loss_module = TTSLossModule(self.model, activation_checkpointing=config.activation_checkpointing)
        self.wrapped = wrap(self.loss_module, self.ctx, config.strategy)
        self.optimizer = _optimizer(self.wrapped, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, config.warmup_steps, config.steps, config.min_lr_ratio))
        self.curves = CurveLog(self.out)
        self.step = 0
        self.stream = EpochStream(examples.train, config.batch_size, config.seed, self.ctx)

    # ---- checkpoints ----------------------------------------------------------------------------

    def _config_record(self) -> dict[str, Any]:
        record = asdict(self.config)
        record["lora"] = asdict(self.config.lora) if self.config.lora else None
        return record

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (collective under FSDP; rank 0 writes)."""
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        weights = get_model_state_dict(self.wrapped, options=options)
        optim = get_optimizer_state_dict(self.wrapped, self.optimizer, options=options)
        path = None
        if self.ctx.is_main:
            state = ckpt.TrainerState(self.step, self.stream.epoch, self.stream.index, optim,
                                      self.scheduler.state_dict(), ckpt.rng_state(), self._config_record())
            path = ckpt.save_checkpoint(self.out, state, lambda d: self._write_weights(d, weights),
                                        keep=self.config.keep_checkpoints)
        barrier(self.ctx)
        return path

    def _write_weights(self, directory: Path, weights: dict[str, Any]) -> None:
        if self.config.lora is not None:
            save_adapters(self.model, directory / "adapter", self.config.lora)
            return
        from stepaudio.lm.step1.loading import save_step1

        plain = Step1ForCausalLM(self.model.config, device="meta")
        state = {k.removeprefix("lm."): v for k, v in weights.items()}
        plain.load_state_dict(state, assign=True)
        save_step1(plain, directory / "model")

    def resume(self) -> int:
        """Continue from the newest complete checkpoint; returns its step (0 when there is none)."""
        ckpt.remove_partials(self.out)
        latest = ckpt.latest_checkpoint(self.out)
        if latest is None:
            return 0
        state = ckpt.load_trainer_state(latest)
        saved = state.config
        mine = self._config_record()
        for key in _RESUME_KEYS:
            if saved.get(key) != mine.get(key):
                raise CheckpointError(f"{latest}: cannot resume with a different {key} "
                                      f"(checkpoint {saved.get(key)!r}, now {mine.get(key)!r})")
        if self.config.lora is not None:
            load_adapters(self.model, latest / "adapter")
        else:  # through the wrapper, so that FSDP shards it; plain modules and DDP take it as is
            saved = load_step1(latest / "model", dtype=torch.float32).state_dict()
            set_model_state_dict(self.wrapped, {f"lm.{k}": v for k, v in saved.items()},
                                 options=StateDictOptions(full_state_dict=True))
        set_optimizer_state_dict(self.wrapped, self.optimizer, dict(state.optimizer),
                                 options=StateDictOptions(full_state_dict=True))
        self.scheduler.load_state_dict(dict(state.scheduler))
        ckpt.restore_rng(state.rng)
        self.step = state.step
        self.stream = EpochStream(self.examples.train, self.config.batch_size, self.config.seed, self.ctx,
                                  epoch=state.epoch, index=state.batch_index)
        if self.ctx.is_main:
            self.curves.truncate_after(self.step)
        return self.step

    # ---- the loop -------------------------------------------------------------------------------

    def _micro_batches(self) -> Iterator[tuple[Any, bool]]:
        for k in range(self.config.grad_accum):
            yield collate(self.stream.next()).to(self.config.device), k == self.config.grad_accum - 1

    def train_step(self) -> tuple[float, float, int]:
        """One optimiser step; returns (token-mean loss, grad norm, target tokens), summed over ranks."""
        batches = list(self._micro_batches())
        local_tokens = sum(b.target_tokens for b, _ in batches)
        totals = all_reduce_sum(torch.tensor([float(local_tokens)], dtype=torch.float64), self.ctx)
        tokens = int(totals[0])
        if tokens == 0:
            raise StepAudioError("an optimiser step saw no target tokens")
        loss_sum = torch.zeros((), dtype=torch.float64)
        for batch, last in batches:
            no_sync = getattr(self.wrapped, "no_sync", None)
            sync = contextlib.nullcontext() if last or no_sync is None else no_sync()
            with sync, _autocast(self.config):
                loss, _ = self.wrapped(batch.input_ids, batch.valid, batch.labels)
                # DDP averages gradients over ranks, so scale the sum by world / global tokens.
                (loss * (self.ctx.world_size / tokens)).backward()
            loss_sum += loss.detach().double().cpu()
        params = [p for p in self.wrapped.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        reduced = all_reduce_sum(loss_sum.reshape(1), self.ctx)
        return float(reduced[0]) / tokens, float(norm), tokens

    def run(self, resume: bool = False, on_step: Callable[[CurveRow], None] | None = None) -> TrainResult:
        config = self.config
        started = self.resume() if resume else 0
        if not resume and ckpt.latest_checkpoint(self.out) is not None:
            raise CheckpointError(f"{self.out} already holds checkpoints; pass --resume or choose a new --out")
        initial_eval = evaluate(self.wrapped, self.examples.eval, config, self.ctx)
        if started == 0 and self.ctx.is_main:
            self.curves.truncate_after(-1)
            self.curves.append(CurveRow(0, 0, float(self.scheduler.get_last_lr()[0]), math.nan, math.nan, 0, 0.0,
                                        initial_eval))
        losses: list[float] = []
        tokens_done = 0
        begin = time.perf_counter()
        last_saved = started
        bar = _progress(config.steps, started, enabled=config.progress and self.ctx.is_main)
        final_eval = initial_eval
        while self.step < config.steps:
            lr = float(self.scheduler.get_last_lr()[0])
            loss, norm, tokens = self.train_step()
            losses.append(loss)
            tokens_done += tokens
            eval_loss = math.nan
            if self.step % config.eval_every == 0 or self.step == config.steps:
                eval_loss = final_eval = evaluate(self.wrapped, self.examples.eval, config, self.ctx)
            row = CurveRow(self.step, self.stream.epoch, lr, loss, norm, tokens,
                           time.perf_counter() - begin, eval_loss)
            if self.ctx.is_main:
                self.curves.append(row)
            if on_step is not None:
                on_step(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
            if self.step % config.save_every == 0 or self.step == config.steps:
                self.save()
                last_saved = self.step
        if bar is not None:
            bar.close()
        elapsed = max(time.perf_counter() - begin, 1e-9)
        rows = self.curves.read() if self.ctx.is_main else []
        if self.ctx.is_main and rows:
            plot(rows, self.out / PNG_NAME)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        done = len(losses)
        return TrainResult(
            steps=self.step, first_loss=losses[0] if losses else math.nan,
            final_loss=losses[-1] if losses else math.nan, initial_eval_loss=initial_eval,
            final_eval_loss=final_eval, steps_per_s=done / elapsed, target_tokens_per_s=tokens_done / elapsed,
            trainable_params=trainable, total_params=total,
            checkpoint=ckpt.latest_checkpoint(self.out) if last_saved else None, resumed_from=started, curve=rows,
        )


def _progress(total: int, initial: int, enabled: bool):  # type: ignore[no-untyped-def]
    if not enabled:
        return None
    import sys

    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)
