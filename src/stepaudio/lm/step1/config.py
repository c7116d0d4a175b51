"""Step1 model configuration, read from a Hugging Face `config.json` (the class defaults upstream are other models)."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from stepaudio.errors import CheckpointError
from stepaudio.shards import read_config_json
from stepaudio.text.vocab import STEP1


@dataclass(frozen=True)
class Step1Config:
    """Shape and token facts of a Step1 causal LM (TTS-3B and Chat share the architecture)."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_attention_groups: int
    num_hidden_layers: int
    vocab_size: int
    max_seq_len: int = 32768
    rms_norm_eps: float = 1e-5
    bos_token_id: int = 1
    eos_token_id: int = 3
    pad_token_id: int = 0
    torch_dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise CheckpointError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_attention_groups:
            raise CheckpointError(
                f"num_attention_heads {self.num_attention_heads} is not divisible by "
                f"num_attention_groups {self.num_attention_groups}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_dim(self) -> int:
        """Width of the K (or V) projection: groups x head_dim."""
        return self.num_attention_groups * self.head_dim

    @property
    def group_size(self) -> int:
        """Query heads served by one KV group."""
        return self.num_attention_heads // self.num_attention_groups

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step1Config:
        """Build from a config.json dict; unknown fields (auto_map, architectures, ...) are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        eos = values.get("eos_token_id")
        if isinstance(eos, list):
            values["eos_token_id"] = int(eos[0])
        missing = [f.name for f in fields(cls) if f.name not in values and f.default is MISSING]
        if missing:
            raise CheckpointError(f"config.json lacks required Step1 fields: {', '.join(missing)}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> Step1Config:
        """Read `path` (a config.json file or a directory holding one)."""
        return cls.from_dict(read_config_json(path))

    @classmethod
    def resolve(cls, name_or_path: str | Path) -> Step1Config:
        """A named shape (`tts-3b`, `chat-130b`) or a config.json path / model directory."""
        if str(name_or_path) in NAMED_SHAPES:
            return NAMED_SHAPES[str(name_or_path)]
        return cls.from_json(name_or_path)

    def to_hf_dict(self) -> dict[str, Any]:
        """The config.json layout of the real releases (auto_map names the upstream remote code)."""
        return {
            "architectures": ["Step1ForCausalLM"],
            "auto_map": {
                "AutoConfig": "configuration_step1.Step1Config",
                "AutoModelForCausalLM": "modeling_step1.Step1ForCausalLM",
            },
            "model_type": "step1",
            "tie_word_embeddings": False,
            **asdict(self),
        }


NAMED_SHAPES: dict[str, Step1Config] = {
    "tts-3b": Step1Config(
        hidden_size=3072,
        intermediate_size=8192,
        num_attention_heads=48,
        num_attention_groups=4,
        num_hidden_layers=32,
        vocab_size=STEP1.vocab_size,
    ),
    "chat-130b": Step1Config(
        hidden_size=12288,
        intermediate_size=31232,
        num_attention_heads=96,
        num_attention_groups=8,
        num_hidden_layers=88,
        vocab_size=STEP1.vocab_size,
    ),
}
