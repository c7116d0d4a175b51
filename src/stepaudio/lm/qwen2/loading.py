"""The Qwen2 key map: load a Qwen2 decoder from a Hugging Face folder (plain Qwen2 or Step-Audio 2), save one.

A Step-Audio 2 checkpoint also holds its audio encoder and adaptor (`encoder.*`, `adapter.*`); those keys
belong to `audio_encoder/` and are skipped here. A tied head has no `lm_head.weight` of its own.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stepaudio.errors import CheckpointError
from stepaudio.lm.checkpoint import load_weights, save_weights
from stepaudio.lm.layers import decoder_shapes
from stepaudio.lm.qwen2.config import Qwen2Config
from stepaudio.lm.qwen2.model import Qwen2ForCausalLM

DECODER_PREFIXES = ("model.", "lm_head.")


def expected_shapes(cfg: Qwen2Config) -> dict[str, tuple[int, ...]]:
    """Every checkpoint key of the decoder and its shape, in checkpoint order."""
    return decoder_shapes(cfg, qkv_bias=True, head=not cfg.tie_word_embeddings)


def load_qwen2(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    strict: bool = True,
) -> Qwen2ForCausalLM:
    """Load the decoder of a model directory. dtype defaults to the checkpoint's own."""
    directory = Path(path)
    cfg = Qwen2Config.from_json(directory)
    tied = cfg.tie_word_embeddings

    def foreign(key: str) -> bool:
        return not key.startswith(DECODER_PREFIXES) or (tied and key == "lm_head.weight")

    model = Qwen2ForCausalLM(cfg, device="meta", dtype=dtype or torch.float32)
    load_weights(model, directory, expected_shapes(cfg), device=device, dtype=dtype, strict=strict, foreign=foreign)
    model.tie_weights()
    model.inv_freq = model.inv_freq.to(device)
    return model.eval()


def save_qwen2(model: Qwen2ForCausalLM, path: str | Path, *, max_shard_bytes: int | None = None) -> None:
    """Write a plain Qwen2 folder (config.json and the weights) that `load_qwen2` and transformers read."""
    state = model.state_dict()
    expected = expected_shapes(model.config)
    if not set(expected) <= set(state) or any(k not in expected and k != "lm_head.weight" for k in state):
        raise CheckpointError("only a plain (unquantised) Qwen2 model can be saved")
    dtype_name = str(state["model.embed_tokens.weight"].dtype).removeprefix("torch.")
    config = model.config.to_hf_dict() | {"torch_dtype": dtype_name}
    save_weights({key: state[key] for key in expected}, Path(path), config, max_shard_bytes=max_shard_bytes)
