"""Hugging Face checkpoint folders: find the shards, load weights by a declarative key map, write them back.

A directory holds `config.json` and either one `*.safetensors` file or shards listed by
`model.safetensors.index.json` (other files, e.g. `lib/*.so`, are ignored). Each family states its
expected keys and shapes from its config (`lm.step1.loading`, `lm.qwen2.loading`); any mismatch here
names the key and both shapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from stepaudio.errors import CheckpointError
from stepaudio.lm.safetensors_mmap import SafetensorsFile
from stepaudio.shards import INDEX_NAME, indexed_files, single_file


def checkpoint_files(directory: Path) -> dict[str, Path]:
    """Key -> file holding it, from the shard index or the single safetensors file (`stepaudio.shards`)."""
    files = indexed_files(directory)
    if files is not None:
        return files
    single = single_file(directory)
    return {key: single for key in SafetensorsFile(single).entries}


def load_weights(
    model: nn.Module,
    directory: Path,
    expected: Mapping[str, tuple[int, ...]],
    *,
    device: torch.device | str,
    dtype: torch.dtype | None,
    strict: bool = True,
    foreign: Callable[[str], bool] | None = None,
) -> None:
    """Put every `expected` key of the checkpoint into the same-named parameter of `model` (built on meta).

    Shapes are checked before anything is read. `dtype` None keeps the checkpoint's own. On CPU with a
    matching dtype the weights stay memory-mapped views of the files; otherwise each tensor is converted
    on its own, so peak memory is the model plus one tensor. Keys for which `foreign(key)` holds belong
    to other parts of a combined checkpoint and are skipped; any other unexpected key is an error when
    `strict`.
    """
    files = checkpoint_files(directory)
    missing = sorted(set(expected) - set(files))
    if missing:
        raise CheckpointError(f"{directory}: checkpoint lacks {len(missing)} key(s), first {missing[0]!r}")
    unexpected = sorted(k for k in set(files) - set(expected) if foreign is None or not foreign(k))
    if unexpected and strict:
        raise CheckpointError(f"{directory}: unexpected key(s) for this config.json, first {unexpected[0]!r}")
    opened = {p: SafetensorsFile(p) for p in {files[k] for k in expected}}
    for key, shape in expected.items():
        if key not in opened[files[key]].entries:
            raise CheckpointError(f"{files[key].name} does not hold {key!r} although the index says so")
        got = opened[files[key]].shape(key)
        if got != shape:
            raise CheckpointError(
                f"{key}: checkpoint shape {list(got)} does not match {list(shape)} expected from config.json"
            )
    for key in expected:
        tensor = opened[files[key]].get(key)
        if not tensor.is_floating_point():
            raise CheckpointError(f"{key}: expected a floating point tensor, found {tensor.dtype}")
        module_name, _, name = key.rpartition(".")
        module = model.get_submodule(module_name)
        value = tensor.to(device=device, dtype=dtype or tensor.dtype)
        module._parameters[name] = nn.Parameter(value, requires_grad=False)


def save_weights(
    state: Mapping[str, torch.Tensor],
    directory: Path,
    config: Mapping[str, Any],
    *,
    max_shard_bytes: int | None = None,
) -> None:
    """Write config.json and `state` in its order (one file, or shards plus an index past `max_shard_bytes`)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: t.detach().to("cpu").contiguous() for k, t in state.items()}
    (directory / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n")
    meta = {"format": "pt"}
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        save_file(tensors, str(directory / "model.safetensors"), metadata=meta)
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    weight_map: dict[str, str] = {}
    for n, shard in enumerate(shards, start=1):
        name = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / name), metadata=meta)
        weight_map |= dict.fromkeys(shard, name)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
