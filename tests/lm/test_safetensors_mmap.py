from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from stepaudio.errors import CheckpointError
from stepaudio.lm.safetensors_mmap import SafetensorsFile


def test_tensors_are_views_of_one_mapping(tmp_path: Path) -> None:
    tensors = {
        "a": torch.randn(3, 5),
        "b": torch.randn(7).to(torch.bfloat16),
        "c": torch.arange(4, dtype=torch.int64),
        "empty": torch.zeros(0, 3),
    }
    save_file(tensors, tmp_path / "x.safetensors", metadata={"format": "pt"})
    file = SafetensorsFile(tmp_path / "x.safetensors")
    assert file.metadata == {"format": "pt"} and set(file.entries) == set(tensors)
    for key, tensor in tensors.items():
        got = file.get(key)
        assert got.dtype == tensor.dtype and torch.equal(got, tensor)
    assert file.get("a").data_ptr() == file.get("a").data_ptr()  # zero-copy: no fresh buffer per read
    file.get("a").zero_()  # private mapping: the file is untouched
    assert torch.equal(SafetensorsFile(tmp_path / "x.safetensors").get("a"), tensors["a"])


def test_bad_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "bad.safetensors").write_bytes(b"\x05")
    with pytest.raises(CheckpointError, match="header"):
        SafetensorsFile(tmp_path / "bad.safetensors")
