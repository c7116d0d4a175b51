"""The encoder/adaptor key map: load `encoder.*` and `adapter.*` from a Step-Audio 2 release folder.

The folder is read as released: `config.json` with a nested `audio_encoder_config`, and the weights in one
`.safetensors` file or in shards listed by `model.safetensors.index.json`. The decoder's keys (`model.*`,
`lm_head.*`) belong to `lm.qwen2` and are skipped; any other key is an error. Shapes are checked before a
tensor is read, and a mismatch names the key and both shapes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from stepaudio.audio_encoder.config import ADAPTER_HIDDEN, AudioEncoderConfig
from stepaudio.audio_encoder.model import AudioEncoder
from stepaudio.errors import CheckpointError
from stepaudio.shards import INDEX_NAME as INDEX_NAME  # the folder layout this module reads, named here too
from stepaudio.shards import indexed_files, single_file

PREFIXES = ("encoder.", "adapter.")
DECODER_PREFIXES = ("model.", "lm_head.")


def expected_shapes(cfg: AudioEncoderConfig) -> dict[str, tuple[int, ...]]:
    """Every checkpoint key of the encoder and adaptor and its shape."""
    c, k = cfg.n_audio_state, cfg.kernel_size
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.conv1.weight": (c, cfg.n_mels, 3),
        "encoder.conv1.bias": (c,),
        "encoder.conv2.weight": (c, c, 3),
        "encoder.conv2.bias": (c,),
        "encoder.positional_embedding.weight": (cfg.n_audio_ctx, c),
    }
    for n in range(cfg.n_audio_layer):
        p = f"encoder.blocks.{n}."
        shapes |= {
            p + "attn.query.weight": (c, c),
            p + "attn.query.bias": (c,),
            p + "attn.key.weight": (c, c),
            p + "attn.value.weight": (c, c),
            p + "attn.value.bias": (c,),
            p + "attn.out.weight": (c, c),
            p + "attn.out.bias": (c,),
            p + "attn_ln.weight": (c,),
            p + "attn_ln.bias": (c,),
            p + "mlp.0.weight": (4 * c, c),
            p + "mlp.0.bias": (4 * c,),
            p + "mlp.2.weight": (c, 4 * c),
            p + "mlp.2.bias": (c,),
            p + "mlp_ln.weight": (c,),
            p + "mlp_ln.bias": (c,),
        }
    shapes |= {
        "encoder.after_norm.weight": (c,),
        "encoder.after_norm.bias": (c,),
        "adapter.conv.weight": (c, c, k),
        "adapter.conv.bias": (c,),
        "adapter.linear1.weight": (ADAPTER_HIDDEN, c),
        "adapter.linear1.bias": (ADAPTER_HIDDEN,),
        "adapter.linear2.weight": (cfg.llm_dim, ADAPTER_HIDDEN),
        "adapter.linear2.bias": (cfg.llm_dim,),
    }
    return shapes


def weight_files(directory: Path) -> dict[str, Path]:
    """Key -> the file holding it: the shard index, else `model.safetensors`, else the folder's one
    `.safetensors` file (the rule `lm.checkpoint` applies to the same folder)."""
    files = indexed_files(directory)
    if files is not None:
        return files
    single = single_file(directory)
    with safe_open(str(single), framework="pt") as handle:
        return dict.fromkeys(handle.keys(), single)


def load_audio_encoder(
    path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> AudioEncoder:
    """The encoder and adaptor of a release folder. dtype defaults to the checkpoint's own."""
    directory = Path(path)
    cfg = AudioEncoderConfig.from_json(directory)
    expected = expected_shapes(cfg)
    files = weight_files(directory)
    missing = [key for key in expected if key not in files]
    if missing:
        raise CheckpointError(f"{directory}: checkpoint lacks {len(missing)} encoder key(s), first {missing[0]!r}")
    unexpected = sorted(k for k in files if k not in expected and not k.startswith(DECODER_PREFIXES))
    if unexpected:
        raise CheckpointError(f"{directory}: unexpected key(s) for this config.json, first {unexpected[0]!r}")
    state: dict[str, torch.Tensor] = {}
    for file in sorted({files[key] for key in expected}):
        with safe_open(str(file), framework="pt") as handle:
            held = set(handle.keys())
            for key in (k for k in expected if files[k] == file):
                if key not in held:
                    raise CheckpointError(f"{file.name} does not hold {key!r} although the index says so")
                shape = tuple(handle.get_slice(key).get_shape())
                if shape != expected[key]:
                    raise CheckpointError(
                        f"{key}: checkpoint shape {list(shape)} does not match {list(expected[key])} "
                        "expected from config.json"
                    )
                tensor = handle.get_tensor(key)
                if not tensor.is_floating_point():
                    raise CheckpointError(f"{key}: expected a floating point tensor, found {tensor.dtype}")
                state[key] = tensor.to(device=device, dtype=dtype or tensor.dtype)
    model = AudioEncoder(cfg, device="meta")
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
