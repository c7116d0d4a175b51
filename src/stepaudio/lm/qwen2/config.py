"""Qwen2 decoder configuration from a Hugging Face `config.json`: plain Qwen2, or Step-Audio 2's `text_config`."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from stepaudio.errors import CheckpointError
from stepaudio.shards import read_config_json


@dataclass(frozen=True)
class Qwen2Config:
    """Shape of a Qwen2-style decoder: RoPE, grouped-query attention with q/k/v biases, SwiGLU, RMSNorm."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    num_hidden_layers: int
    vocab_size: int
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1e6
    tie_word_embeddings: bool = False
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int = 0
    torch_dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise CheckpointError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise CheckpointError(
                f"num_attention_heads {self.num_attention_heads} is not divisible by "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise CheckpointError(f"RoPE needs an even head_dim, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_dim(self) -> int:
        """Width of the K (or V) projection: KV heads x head_dim."""
        return self.num_key_value_heads * self.head_dim

    @property
    def group_size(self) -> int:
        """Query heads served by one KV head."""
        return self.num_attention_heads // self.num_key_value_heads

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Qwen2Config:
        """Build from a config.json dict. A Step-Audio 2 config nests the decoder under `text_config` (its
        `num_attention_groups` is the KV head count); settings this forward does not implement are refused
        rather than ignored."""
        outer_dtype = data.get("torch_dtype")
        if isinstance(data.get("text_config"), dict):
            data = data["text_config"]
        values: dict[str, Any] = {k: v for k, v in data.items() if k in {f.name for f in fields(cls)}}
        if "num_key_value_heads" not in values and "num_attention_groups" in data:
            values["num_key_value_heads"] = data["num_attention_groups"]
        if "num_key_value_heads" not in values and "num_attention_heads" in values:
            values["num_key_value_heads"] = values["num_attention_heads"]  # HF's default: plain multi-head
        eos = data.get("eos_token_id")
        eos_list = eos if isinstance(eos, list) else [] if eos is None else [eos]
        values["eos_token_ids"] = tuple(int(e) for e in eos_list)
        if values.get("pad_token_id") is None:
            values.pop("pad_token_id", None)
        if "torch_dtype" not in values and outer_dtype:
            values["torch_dtype"] = outer_dtype
        _refuse_unsupported(data)
        missing = [f.name for f in fields(cls) if f.name not in values and f.default is MISSING]
        if missing:
            raise CheckpointError(f"config.json lacks required Qwen2 fields: {', '.join(missing)}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> Qwen2Config:
        """Read `path` (a config.json file or a directory holding one)."""
        return cls.from_dict(read_config_json(path))

    def to_hf_dict(self) -> dict[str, Any]:
        """A plain Qwen2 config.json (what `transformers.Qwen2ForCausalLM` reads)."""
        return {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "num_hidden_layers": self.num_hidden_layers,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": None,
            "tie_word_embeddings": self.tie_word_embeddings,
            "eos_token_id": list(self.eos_token_ids),
            "pad_token_id": self.pad_token_id,
            "torch_dtype": self.torch_dtype,
            "use_sliding_window": False,
        }


def _refuse_unsupported(data: dict[str, Any]) -> None:
    act = data.get("hidden_act", "silu")
    if act != "silu":
        raise CheckpointError(f"hidden_act {act!r} is not supported (SwiGLU with silu only)")
    if data.get("rope_scaling"):
        raise CheckpointError(f"rope_scaling {data['rope_scaling']!r} is not supported (plain RoPE only)")
    if data.get("use_sliding_window"):
        raise CheckpointError("sliding-window attention is not supported")
    head_dim = data.get("head_dim")
    if head_dim is not None and head_dim * data.get("num_attention_heads", 0) != data.get("hidden_size"):
        raise CheckpointError(f"head_dim {head_dim} other than hidden_size / num_attention_heads is not supported")


# Step-Audio 2 mini's LM: the Qwen2.5-7B shape with Step's larger vocabulary (REFERENCE-SA2.md §1), for the
# speed bench and the serving arithmetic (no checkpoint needed).
STEP_AUDIO2_MINI = Qwen2Config(hidden_size=3584, intermediate_size=18944, num_attention_heads=28,
                               num_key_value_heads=4, num_hidden_layers=28, vocab_size=158720, rope_theta=1e6)
