"""LoRA on the Step1 linears: wrap, save / load adapters, merge into a plain checkpoint.

Each targeted `nn.Linear` (default: q/k/v/o_proj and gate/up/down_proj of every layer) becomes
`base(x) + (alpha / r) * B(A(dropout(x)))` with the base frozen, A Kaiming-initialised and B zero, so
training starts from exactly the base model. Adapters are saved in the PEFT layout
(`adapter_model.safetensors` with `base_model.model.<module>.lora_{A,B}.weight`, and
`adapter_config.json`), which PEFT-aware tools read. `merge_lora` folds `W + (alpha / r) B A` into the
base weights and gives back a plain `Step1ForCausalLM` that `save_step1` writes as a standard Hugging
Face checkpoint, loadable by `load_step1` and by vLLM.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from stepaudio.errors import CheckpointError
from stepaudio.lm.step1.model import Step1ForCausalLM

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."
STEP1_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    targets: tuple[str, ...] = STEP1_LINEARS

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise CheckpointError(f"LoRA rank must be at least 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise CheckpointError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        unknown = sorted(set(self.targets) - {*STEP1_LINEARS, "lm_head"})
        if unknown or not self.targets:
            raise CheckpointError(f"unknown LoRA target(s) {unknown}; choose from {', '.join(STEP1_LINEARS)}, lm_head")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def to_peft(self, base_model: str = "") -> dict[str, object]:
        return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": self.rank, "lora_alpha": self.alpha,
                "lora_dropout": self.dropout, "target_modules": list(self.targets), "bias": "none",
                "fan_in_fan_out": False, "base_model_name_or_path": base_model}

    @classmethod
    def from_peft(cls, data: dict[str, object]) -> LoRAConfig:
        if data.get("peft_type") != "LORA":
            raise CheckpointError(f"adapter config peft_type is {data.get('peft_type')!r}, not 'LORA'")
        targets = data.get("target_modules") or ()
        if not isinstance(targets, list | tuple):
            raise CheckpointError("adapter config target_modules must be a list")
        return cls(rank=int(str(data["r"])), alpha=float(str(data["lora_alpha"])),
                   dropout=float(str(data.get("lora_dropout") or 0.0)), targets=tuple(str(t) for t in targets))


class LoRALinear(nn.Module):
    """A frozen linear plus a trainable low-rank update (module names match PEFT's)."""

    base: nn.Linear
    lora_A: nn.Linear
    lora_B: nn.Linear
    dropout: nn.Module
    scaling: float

    def __init__(self, base: nn.Linear, config: LoRAConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if base.bias is not None:
            raise CheckpointError("Step1 linears have no bias; LoRA here does not handle one")
        self.base = base
        self.base.weight.requires_grad_(False)
        device = base.weight.device
        self.lora_A = nn.Linear(base.in_features, config.rank, bias=False, device=device, dtype=torch.float32)
        self.lora_B = nn.Linear(config.rank, base.out_features, bias=False, device=device, dtype=torch.float32)
        bound = 1.0 / math.sqrt(base.in_features)  # kaiming_uniform_(a=sqrt(5)), as nn.Linear and PEFT do
        with torch.no_grad():
            self.lora_A.weight.copy_(
                torch.rand(self.lora_A.weight.shape, generator=generator).mul_(2 * bound).sub_(bound))
            self.lora_B.weight.zero_()
        self.dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.scaling = config.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        update = self.lora_B(self.lora_A(self.dropout(x).to(self.lora_A.weight.dtype)))
        return out + (update * self.scaling).to(out.dtype)

    def merged_weight(self) -> torch.Tensor:
        delta = self.lora_B.weight.float() @ self.lora_A.weight.float()
        return (self.base.weight.float() + self.scaling * delta).to(self.base.weight.dtype)


def apply_lora(model: Step1ForCausalLM, config: LoRAConfig, seed: int = 0) -> list[str]:
    """Wrap the targeted linears in place and freeze everything else; returns the wrapped module names."""
    generator = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        param.requires_grad_(False)
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.rpartition(".")[2] in config.targets]
    if not names:
        raise CheckpointError("no Step1 linear matched the LoRA targets (are the projections fused?)")
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, LoRALinear(getattr(parent, leaf), config, generator))
    return names


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights under their PEFT keys."""
    out: dict[str, torch.Tensor] = {}
    for name, module in lora_modules(model).items():
        out[f"{PEFT_PREFIX}{name}.lora_A.weight"] = module.lora_A.weight.detach().cpu().contiguous()
        out[f"{PEFT_PREFIX}{name}.lora_B.weight"] = module.lora_B.weight.detach().cpu().contiguous()
    return out


def save_adapters(model: nn.Module, directory: str | Path, config: LoRAConfig, base_model: str = "") -> Path:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = adapter_state(model)
    if not state:
        raise CheckpointError("the model has no LoRA adapters to save")
    save_file(state, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (out / ADAPTER_CONFIG).write_text(json.dumps(config.to_peft(base_model), indent=2) + "\n")
    return out


def read_adapter_config(directory: str | Path) -> LoRAConfig:
    path = Path(directory) / ADAPTER_CONFIG
    if not path.is_file():
        raise CheckpointError(f"no {ADAPTER_CONFIG} in {directory}")
    try:
        return LoRAConfig.from_peft(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a LoRA adapter config ({exc})") from exc


def load_adapters(model: Step1ForCausalLM, directory: str | Path) -> LoRAConfig:
    """Wrap `model` as the saved config says (if not yet wrapped) and load the adapter weights."""
    config = read_adapter_config(directory)
    if not lora_modules(model):
        apply_lora(model, config)
    path = Path(directory) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"no {ADAPTER_WEIGHTS} in {directory}")
    saved = load_file(str(path))
    expected = adapter_state(model)
    missing = sorted(set(expected) - set(saved))
    extra = sorted(set(saved) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise CheckpointError(f"{path}: adapter keys do not match the model ({what})")
    modules = lora_modules(model)
    with torch.no_grad():
        for key, tensor in saved.items():
            name, _, part = key.removeprefix(PEFT_PREFIX).rpartition(".lora_")
            target = getattr(modules[name], "lora_" + part.removesuffix(".weight")).weight
            if tuple(tensor.shape) != tuple(target.shape):
                raise CheckpointError(f"{key}: saved shape {list(tensor.shape)} != model {list(target.shape)}")
            target.copy_(tensor)
    return config


def merge_lora(model: Step1ForCausalLM) -> Step1ForCausalLM:
    """Fold every adapter into its base weight, in place; the result is a plain Step1 model."""
    for name, module in lora_modules(model).items():
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = module.base
        with torch.no_grad():
            base.weight = nn.Parameter(module.merged_weight(), requires_grad=False)
        setattr(parent, leaf, base)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())

