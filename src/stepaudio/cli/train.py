"""`stepaudio train tts --dataset DIR --out DIR (--init MODEL_DIR | --config CONFIG)`: train the Step1 TTS LM
(Step-Audio-TTS-3B, or Step-Audio-EditX with its clone and edit prompts).

Thin: flags -> `TTSTrainingJob` -> `stepaudio.train.run.train_tts`. Multi-GPU: run the same command under
`torchrun --nproc-per-node N` (see docs/training.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stepaudio.errors import StepAudioError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="train_target", metavar="TARGET")
    tts = sub.add_parser("tts", help="train or fine-tune the Step1 TTS language model (full or LoRA)",
                         description="Train the Step1 TTS LM on a `stepaudio data generate` dataset.")
    tts.add_argument("--dataset", required=True, type=Path, help="dataset folder (dataset.json + manifest shards)")
    tts.add_argument("--out", required=True, type=Path, help="output folder: checkpoints/, loss.csv/png, model/")
    start = tts.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", type=Path, help="Step1 model folder to fine-tune (e.g. MODELS/Step-Audio-TTS-3B)")
    start.add_argument("--config", help="config.json or a named shape (tts-3b) to train from scratch")
    tts.add_argument("--tokenizer", type=Path, help="the Step tokenizer.model (default: the one in --init)")
    tts.add_argument("--model-path", type=Path,
                     help="MODELS folder: prompt with its speakers/ (tokenised by its Step-Audio-Tokenizer) "
                          "exactly as inference does; default: each voice's first dataset row")
    tts.add_argument("--format", dest="prompt_format", choices=("auto", "step", "editx"), default="auto",
                     help="prompts of the examples: step (TTS-3B, with speakers) or editx (Step-Audio-EditX clone "
                          "prompts, and edit prompts from DATASET/edits.jsonl); auto: editx when --init is a "
                          "Step-Audio-EditX folder. With editx, --model-path is the EditX MODEL_PATH (its "
                          "Step-Audio-Tokenizer tokenises clone prompts that are no dataset row)")
    tts.add_argument("--lora-rank", type=int, help="train LoRA adapters of this rank instead of all weights")
    tts.add_argument("--lora-alpha", type=float, help="LoRA alpha (default 2 x rank)")
    tts.add_argument("--lora-dropout", type=float, default=0.0)
    tts.add_argument("--lora-targets", default=None,
                     help="comma-separated linears (default q,k,v,o,gate,up,down _proj; lm_head allowed)")
    tts.add_argument("--merge", action="store_true", help="also write the merged standard checkpoint to OUT/model")
    tts.add_argument("--steps", type=int, default=1000, help="optimiser steps (default 1000)")
    tts.add_argument("--batch-size", type=int, default=4, help="examples per micro-batch per process")
    tts.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    tts.add_argument("--lr", type=float, default=1e-4)
    tts.add_argument("--weight-decay", type=float, default=0.0)
    tts.add_argument("--warmup-steps", type=int, default=50)
    tts.add_argument("--max-grad-norm", type=float, default=1.0)
    tts.add_argument("--dtype", choices=("bf16", "fp32"), default="fp32",
                     help="bf16: autocast with fp32 master weights (LoRA: bf16 frozen base); saved in this dtype")
    tts.add_argument("--activation-checkpointing", action="store_true", help="recompute layer activations")
    tts.add_argument("--eval-every", type=int, default=100)
    tts.add_argument("--save-every", type=int, default=100)
    tts.add_argument("--keep-checkpoints", type=int, default=2)
    tts.add_argument("--eval-fraction", type=float, default=0.05, help="share of rows held out (by id hash)")
    tts.add_argument("--max-length", type=int, help="skip examples longer than this many tokens")
    tts.add_argument("--seed", type=int, default=0)
    tts.add_argument("--device", default="cpu", help="cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    tts.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp", help="multi-GPU strategy")
    tts.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in --out")
    tts.add_argument("--no-progress", action="store_true", help="no progress bar")
    memory = sub.add_parser("memory", help="print the computed GPU memory of full vs LoRA fine-tuning",
                            description="Training memory per GPU, computed from a config (not measured).")
    memory.add_argument("--config", default="tts-3b", help="config.json or a named shape (default tts-3b)")
    memory.add_argument("--batch-size", type=int, default=4, help="examples per micro-batch")
    memory.add_argument("--seq-len", type=int, default=1024, help="tokens per example (prompt + answer)")
    memory.add_argument("--target-tokens", type=int, default=400, help="answer tokens per example")
    memory.add_argument("--lora-rank", type=int, default=16)
    memory.add_argument("--fsdp", type=int, default=8, help="GPUs to shard full fine-tuning over (FSDP row)")


def run(args: argparse.Namespace) -> int:
    if args.train_target == "memory":
        return _memory(args)
    if args.train_target != "tts":
        raise StepAudioError("say what to train: stepaudio train tts --dataset DIR --out DIR ...")
    from stepaudio.train.loop import TrainConfig
    from stepaudio.train.lora import STEP1_LINEARS, LoRAConfig
    from stepaudio.train.run import TTSTrainingJob, train_tts

    lora = None
    if args.lora_rank is not None:
        targets = tuple(t.strip() for t in args.lora_targets.split(",")) if args.lora_targets else STEP1_LINEARS
        lora = LoRAConfig(rank=args.lora_rank, alpha=args.lora_alpha or 2.0 * args.lora_rank,
                          dropout=args.lora_dropout, targets=targets)
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, max_grad_norm=args.max_grad_norm,
        dtype=args.dtype, activation_checkpointing=args.activation_checkpointing, seed=args.seed,
        eval_every=args.eval_every, save_every=args.save_every, keep_checkpoints=args.keep_checkpoints,
        device=args.device, strategy=args.strategy, lora=lora, progress=not args.no_progress,
    )
    job = TTSTrainingJob(dataset=args.dataset, out=args.out, train=config, init=args.init, config=args.config,
                         tokenizer=args.tokenizer, model_path=args.model_path, merge=args.merge, resume=args.resume,
                         max_length=args.max_length, eval_fraction=args.eval_fraction,
                         prompt_format=args.prompt_format)
    summary = train_tts(job)
    if summary:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


def _memory(args: argparse.Namespace) -> int:
    from stepaudio.eval.bench.table import format_rows
    from stepaudio.lm.step1.config import Step1Config
    from stepaudio.train.memory import COLUMNS, estimate

    config = Step1Config.resolve(args.config)
    shape = {"micro_batch": args.batch_size, "seq_len": args.seq_len,
             "target_tokens": args.batch_size * args.target_tokens}
    rows = [estimate(config, **shape, **variant).row() for variant in (
        {}, {"activation_checkpointing": True},
        {"activation_checkpointing": True, "shards": args.fsdp},
        {"lora_rank": args.lora_rank}, {"lora_rank": args.lora_rank, "activation_checkpointing": True},
    )]
    print(f"GiB per GPU, computed from {args.config}; micro-batch {args.batch_size} x {args.seq_len} tokens "
          f"({args.target_tokens} answer tokens each); not measured")
    print(format_rows(rows, COLUMNS))
    return 0
