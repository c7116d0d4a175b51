"""Which file of a Hugging Face safetensors folder holds each weight: the shard index, else the folder's one
`.safetensors` file; and the folder's `config.json`. The language models (`lm.checkpoint`, their configs) and
Step-Audio 2's audio encoder (`audio_encoder.loading`, `audio_encoder.config`) read the same release folders
by these rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stepaudio.errors import CheckpointError

INDEX_NAME = "model.safetensors.index.json"


def read_config_json(path: str | Path) -> dict[str, Any]:
    """The object in `path` (a config.json file or a directory holding one); a missing, unreadable or non-object
    file is a `CheckpointError` that says what to re-download."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise CheckpointError(f"no config.json at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        raise CheckpointError(f"{path} is not valid JSON ({exc}): re-download this config.json") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, not an object: re-download it")
    return data


def indexed_files(directory: Path) -> dict[str, Path] | None:
    """Key -> shard from the folder's shard index (every listed shard present), or None without an index."""
    index = directory / INDEX_NAME
    if not index.is_file():
        return None
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index} is not a valid shard index ({type(exc).__name__}: {exc}): "
                              f"re-download {INDEX_NAME}") from exc
    files = {key: directory / name for key, name in weight_map.items()}
    for path in set(files.values()):
        if not path.is_file():
            raise CheckpointError(f"{index} lists {path.name}, which is missing: download that shard into "
                                  f"{directory}")
    return files


def single_file(directory: Path) -> Path:
    """The folder's one weights file when it has no index: `model.safetensors`, else its one `model*` or
    `*.safetensors` file."""
    singles = [directory / "model.safetensors"]
    if not singles[0].is_file():
        singles = sorted(directory.glob("model*.safetensors")) or sorted(directory.glob("*.safetensors"))
    if len(singles) != 1:
        found = ", ".join(p.name for p in singles) or "none"
        raise CheckpointError(f"{directory}: expected {INDEX_NAME} or one .safetensors file, found {found}")
    return singles[0]
