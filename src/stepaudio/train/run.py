"""`train_tts(job)`: the whole `stepaudio train tts` run as a library call (the CLI only parses flags).

Model from `--init` (a Step1 folder: fine-tuning) or `--config` (a config.json or a named shape such as
`tts-3b`: from scratch, weights N(0, 0.02), norms 1); dataset read and validated into examples (TTS-3B prompts,
or Step-Audio-EditX clone and edit prompts for an EditX folder: `editx_examples`); the loop; then the final
folders (see `export`) and `summary.json`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from stepaudio.errors import CheckpointError, StepAudioError
from stepaudio.lm.step1.config import Step1Config
from stepaudio.lm.step1.loading import load_step1
from stepaudio.lm.step1.model import Step1ForCausalLM
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.train.distributed import init_distributed, shutdown
from stepaudio.train.editx_examples import load_editx_examples
from stepaudio.train.examples import SpeakerTable, Tokenize, folder_speakers, load_examples
from stepaudio.train.export import export_final
from stepaudio.train.loop import DTYPES, TrainConfig, Trainer, TrainResult

SUMMARY = "summary.json"


@dataclass(frozen=True)
class TTSTrainingJob:
    dataset: Path
    out: Path
    train: TrainConfig
    init: Path | None = None  # a Step1 model folder to fine-tune
    config: str | None = None  # or a config.json / named shape to train from scratch
    tokenizer: Path | None = None  # tokenizer.model (default: the one in --init)
    model_path: Path | None = None  # MODELS: prompt speakers from MODELS/speakers + its audio tokenizer
    merge: bool = False
    resume: bool = False
    max_length: int | None = None
    eval_fraction: float = 0.05
    prompt_format: str = "auto"  # "step" (TTS-3B prompts), "editx" (EditX clone/edit prompts), "auto": by --init


def init_from_config(config: Step1Config, seed: int) -> Step1ForCausalLM:
    """A fresh model: every matrix N(0, 0.02), norms 1 (the usual GPT-style start)."""
    generator = torch.Generator().manual_seed(seed)
    model = Step1ForCausalLM(config, dtype=torch.float32)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    return model


def _model(job: TTSTrainingJob) -> Step1ForCausalLM:
    if (job.init is None) == (job.config is None):
        raise StepAudioError("give exactly one of --init CHECKPOINT_DIR (fine-tune) or --config CONFIG (from scratch)")
    if job.init is not None:
        if not job.init.is_dir():
            raise CheckpointError(f"--init {job.init} is not a model folder")
        base_dtype = DTYPES[job.train.dtype] if job.train.lora is not None else torch.float32
        return load_step1(job.init, dtype=base_dtype)
    assert job.config is not None
    return init_from_config(Step1Config.resolve(job.config), job.train.seed)


def _tokenizer_file(job: TTSTrainingJob) -> Path:
    path = job.tokenizer or (job.init / "tokenizer.model" if job.init else None)
    if path is None:
        raise StepAudioError("training from --config needs --tokenizer TOKENIZER.model (the Step tokenizer)")
    path = path / "tokenizer.model" if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"Step tokenizer {path} not found")
    return path


PROMPT_FORMATS = ("auto", "step", "editx")


def prompt_format(job: TTSTrainingJob) -> str:
    """`editx` when asked, or (auto) when `--init` is a Step-Audio-EditX folder: its decoder's cosyvoice.yaml is
    the EditX family's; else `step`."""
    if job.prompt_format not in PROMPT_FORMATS:
        raise StepAudioError(f"prompt format must be one of {', '.join(PROMPT_FORMATS)}, not {job.prompt_format!r}")
    if job.prompt_format != "auto":
        return job.prompt_format
    if job.init is None:
        return "step"
    from stepaudio.decoder.cosyvoice2.editx import editx_config_from_yaml
    from stepaudio.engines.editx.paths import DECODER_DIR

    try:
        editx_config_from_yaml(job.init / DECODER_DIR / "cosyvoice.yaml")
    except (CheckpointError, KeyError, TypeError, ValueError):
        return "step"
    return "editx"


def _editx_tokenize(job: TTSTrainingJob) -> Tokenize | None:
    """Clone prompts that are no dataset row are tokenised as the editx engine prepares a prompt: mono, peak
    capped at 0.6, 16 kHz, trimmed (with --model-path: the EditX MODEL_PATH holding Step-Audio-Tokenizer/)."""
    if job.model_path is None:
        return None
    from stepaudio.engines.editx.audio import cap_peak, read_raw
    from stepaudio.engines.editx.paths import TOKENIZER_DIR
    from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer

    audio_tokenizer = StepAudioTokenizer.from_pretrained(job.model_path / TOKENIZER_DIR)

    def tokenize(wav: Path) -> list[int]:
        raw = read_raw(wav)
        return list(audio_tokenizer.lm_ids(cap_peak(raw.mono()), raw.sample_rate, trim=True))

    return tokenize


def _speakers(job: TTSTrainingJob) -> tuple[SpeakerTable | None, Tokenize | None]:
    if job.model_path is None:
        return None, None
    from stepaudio.engines.step.paths import StepModelPaths
    from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer

    paths = StepModelPaths.resolve(job.model_path)
    audio_tokenizer = StepAudioTokenizer.from_pretrained(paths.require("tokenizer"))

    def tokenize(wav: Path) -> list[int]:
        return audio_tokenizer.lm_ids(wav, trim=True)

    return folder_speakers(paths.require("speakers"), tokenize), tokenize


def train_tts(job: TTSTrainingJob) -> dict[str, Any]:
    """Run one training job; returns (and writes to OUT/summary.json) what happened."""
    if job.out.resolve() == (job.init.resolve() if job.init else None):
        raise StepAudioError("--out must not be the --init folder")
    if job.merge and job.train.lora is None:
        raise StepAudioError("--merge needs --lora-rank (a full fine-tune is already a plain checkpoint)")
    ctx = init_distributed(job.train.device)
    try:
        train_config = replace(job.train, device=str(ctx.device))
        tokenizer_file = _tokenizer_file(job)
        model = _model(job)
        max_length = min(model.config.max_seq_len, job.max_length or model.config.max_seq_len)
        editx = prompt_format(job) == "editx"
        if editx:
            examples = load_editx_examples(job.dataset, StepTokenizer(tokenizer_file),
                                           vocab_size=model.config.vocab_size, max_length=max_length,
                                           tokenize=_editx_tokenize(job), eval_fraction=job.eval_fraction)
        else:
            speakers, tokenize = _speakers(job)
            examples = load_examples(job.dataset, StepTokenizer(tokenizer_file), vocab_size=model.config.vocab_size,
                                     max_length=max_length, speakers=speakers, tokenize=tokenize,
                                     eval_fraction=job.eval_fraction)
        trainer = Trainer(model, examples, train_config, job.out, ctx)
        result = trainer.run(resume=job.resume)
        summary: dict[str, Any] = {}
        if ctx.is_main:
            exported = export_final(trainer.model, job.out, lora=train_config.lora, merge=job.merge,
                                    dtype=DTYPES[train_config.dtype], tokenizer_model=tokenizer_file,
                                    base_model=str(job.init or job.config),
                                    speakers=None if editx else examples.speakers,
                                    init_dir=job.init)
            summary = _summary(result, examples.skipped, len(examples.train), len(examples.eval), exported)
            summary["prompt_format"] = "editx" if editx else "step"
            (job.out / SUMMARY).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        return summary
    finally:
        shutdown(ctx)


def _summary(result: TrainResult, skipped: Any, n_train: int, n_eval: int, exported: Any) -> dict[str, Any]:
    def clean(value: float) -> float | None:
        return None if math.isnan(value) else round(value, 6)

    return {
        "steps": result.steps, "resumed_from": result.resumed_from,
        "train_examples": n_train, "eval_examples": n_eval, "skipped": dict(skipped),
        "first_loss": clean(result.first_loss), "final_loss": clean(result.final_loss),
        "initial_eval_loss": clean(result.initial_eval_loss), "final_eval_loss": clean(result.final_eval_loss),
        "steps_per_s": round(result.steps_per_s, 3), "target_tokens_per_s": round(result.target_tokens_per_s, 1),
        "trainable_params": result.trainable_params, "total_params": result.total_params,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        **{k: (str(v) if v else None) for k, v in asdict(exported).items()},
    }
