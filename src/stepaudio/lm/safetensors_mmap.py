"""Zero-copy safetensors reading: tensors are views of a private (copy-on-write) memory map.

The `safetensors` library copies every tensor into fresh memory; mapping the file instead means a
checkpoint whose dtype already matches is never held twice in RAM (pages come from the OS cache).
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import torch

from stepaudio.errors import CheckpointError

_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,  # fp8 checkpoints (compressed-tensors float-quantized)
}


class SafetensorsFile:
    """Header of one .safetensors file plus lazy, zero-copy access to its tensors."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        redownload = f"re-download the shard {self.path.name}"
        try:
            size = self.path.stat().st_size
            with self.path.open("rb") as handle:
                (header_len,) = struct.unpack("<Q", handle.read(8))
                if header_len > size - 8:  # garbage or a cut file: do not try to read petabytes
                    raise ValueError(f"the header claims {header_len} bytes of a {size}-byte file")
                header = json.loads(handle.read(header_len))
            if not isinstance(header, dict):
                raise ValueError("the header is not a JSON object")
            ends = [int(e["data_offsets"][1]) for k, e in header.items() if k != "__metadata__"]
        except (OSError, ValueError, struct.error, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(f"cannot read the safetensors header of {self.path} ({exc}): {redownload}") from exc
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self.entries: dict[str, dict] = header
        self._data_start = 8 + header_len
        needed = self._data_start + max(ends, default=0)
        if size < needed:
            raise CheckpointError(f"{self.path} is truncated: {size} bytes of the {needed} its header lists; "
                                  f"{redownload}")
        self._map: mmap.mmap | None = None

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.entries[key]["shape"])

    def get(self, key: str) -> torch.Tensor:
        """The tensor `key` as a view of the mapped file (writes stay private to this process)."""
        entry = self.entries[key]
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise CheckpointError(f"{self.path}: tensor {key} has unsupported dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        if end == begin:
            return torch.empty(shape, dtype=dtype)
        if self._map is None:
            with self.path.open("rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        offset = self._data_start + begin
        count = (end - begin) // dtype.itemsize
        if offset % dtype.itemsize:  # unaligned data (old writers): one copy of this tensor only
            raw = torch.frombuffer(self._map, dtype=torch.uint8, count=end - begin, offset=offset)
            return raw.clone().view(dtype).reshape(shape)
        return torch.frombuffer(self._map, dtype=dtype, count=count, offset=offset).reshape(shape)
