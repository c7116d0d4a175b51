"""Shape of Step-Audio 2's audio encoder and adaptor, read from a release `config.json`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from stepaudio.errors import CheckpointError
from stepaudio.shards import read_config_json

ADAPTER_HIDDEN = 2048  # the adaptor's inner width is fixed in the reference, not a config field


@dataclass(frozen=True)
class AudioEncoderConfig:
    """The release's `audio_encoder_config` (its own field names). `n_codebook_size` is stored but unused:
    the encoder feeds continuous rows to the LM, it has no codebook."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    llm_dim: int
    kernel_size: int = 3
    adapter_stride: int = 2
    n_codebook_size: int = 4096
    torch_dtype: str = "bfloat16"

    def __post_init__(self) -> None:
        if self.n_audio_state % self.n_audio_head:
            raise CheckpointError(
                f"n_audio_state {self.n_audio_state} is not divisible by n_audio_head {self.n_audio_head}"
            )
        if self.kernel_size < 1 or self.adapter_stride < 1:
            raise CheckpointError(
                f"adaptor kernel_size {self.kernel_size} and adapter_stride {self.adapter_stride} must be positive"
            )

    @property
    def head_dim(self) -> int:
        return self.n_audio_state // self.n_audio_head

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AudioEncoderConfig:
        """Build from a release config.json (the nested `audio_encoder_config`) or that section alone."""
        outer_dtype = data.get("torch_dtype")
        section = data.get("audio_encoder_config", data)
        if not isinstance(section, dict):
            raise CheckpointError("config.json: audio_encoder_config is not an object")
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in section.items() if k in names}
        if "torch_dtype" not in values and outer_dtype:
            values["torch_dtype"] = outer_dtype
        required = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "llm_dim")
        missing = [name for name in required if name not in values]
        if missing:
            raise CheckpointError(f"config.json lacks audio_encoder_config fields: {', '.join(missing)}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> AudioEncoderConfig:
        """Read `path` (a config.json file or a directory holding one)."""
        return cls.from_dict(read_config_json(path))

    def to_dict(self) -> dict[str, Any]:
        """The `audio_encoder_config` section as the release writes it."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "torch_dtype"}
