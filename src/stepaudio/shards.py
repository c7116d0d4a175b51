"""Which file of a Hugging Face safetensors folder holds each weight: the shard index, else the folder's one
`.safetensors` file. The language models (`lm.checkpoint`) and Step-Audio 2's audio encoder
(`audio_encoder.loading`) read the same release folders by this one rule."""

from __future__ import annotations

import json
from pathlib import Path

from stepaudio.errors import CheckpointError

INDEX_NAME = "model.safetensors.index.json"


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
