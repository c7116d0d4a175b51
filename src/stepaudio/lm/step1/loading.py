"""The Step1 key map: load and save Step1 checkpoints in the Hugging Face layout the releases use.

Expected keys and shapes come from the config (a declarative map); the folder handling, shape checks and
memory mapping are `lm.checkpoint`'s.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stepaudio.errors import CheckpointError
from stepaudio.lm.checkpoint import load_weights, save_weights
from stepaudio.lm.layers import decoder_shapes
from stepaudio.lm.step1.config import Step1Config
from stepaudio.lm.step1.model import Step1ForCausalLM


def expected_shapes(cfg: Step1Config) -> dict[str, tuple[int, ...]]:
    """Every checkpoint key of a Step1 model and its shape, in checkpoint order."""
    return decoder_shapes(cfg, qkv_bias=False, head=True)


def load_step1(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    strict: bool = True,
) -> Step1ForCausalLM:
    """Load a Step1 model directory. dtype defaults to the checkpoint's own (bf16 for the releases).

    A compressed-tensors folder (`stepaudio quantize`) loads onto the int8/int4 kernels (`lm.compressed`)."""
    directory = Path(path)
    from stepaudio.lm.compressed import load_compressed_step1, read_quantization_config

    if read_quantization_config(directory) is not None:
        return load_compressed_step1(directory, device=device, dtype=dtype, strict=strict)
    cfg = Step1Config.from_json(directory)
    model = Step1ForCausalLM(cfg, device="meta", dtype=dtype or torch.float32)
    load_weights(model, directory, expected_shapes(cfg), device=device, dtype=dtype, strict=strict)
    model.alibi_slopes = model.alibi_slopes.to(device)
    return model.eval()


def save_step1(model: Step1ForCausalLM, path: str | Path, *, max_shard_bytes: int | None = None) -> None:
    """Write config.json and the weights (one file, or shards plus an index past `max_shard_bytes`)."""
    state = model.state_dict()
    expected = expected_shapes(model.config)
    if set(state) != set(expected):
        raise CheckpointError("only a plain (unquantised) Step1 model can be saved")
    dtype_name = str(next(iter(state.values())).dtype).removeprefix("torch.")
    config = model.config.to_hf_dict() | {"torch_dtype": dtype_name}
    ordered = {key: state[key] for key in expected}  # checkpoint order: embedding, layers, norm, head
    save_weights(ordered, Path(path), config, max_shard_bytes=max_shard_bytes)
