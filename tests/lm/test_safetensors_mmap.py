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


def test_a_cut_or_foreign_file_names_the_shard_to_download_again(tmp_path: Path) -> None:
    save_file({"w": torch.randn(64, 64)}, tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"is truncated: \d+ bytes of the \d+ its header lists; re-download "
                                              r"the shard model-00001-of-00002.safetensors"):
        SafetensorsFile(tmp_path / "model-00001-of-00002.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00garbage{" * 10)  # a header length of petabytes
    with pytest.raises(CheckpointError, match=r"claims .* bytes of a 90-byte file.*re-download the shard garbage"):
        SafetensorsFile(tmp_path / "garbage.safetensors")
