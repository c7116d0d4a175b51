"""Kokoro's voices: the names the lite engine offers, and installing their tables from the npm registry.

The voice tables (float32 [510, 1, 256] each: one style vector per phoneme count) are not on PyPI: they ship in
the npm package kokoro-js. `install` (run by `make setup`: `python -m stepaudio.engines.lite.kokoro_voices`)
packs that package with npm, checks the tarball's sha256, extracts the pinned voices, checks each one's
sha256 and writes it atomically into `<cache>/kokoro-js-1.2.1-voices/`, the cache the resolver uses.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stepaudio.engines.lite import resolver
from stepaudio.engines.lite.models import FileSpec
from stepaudio.errors import CheckpointError, StepAudioError

NPM_PACKAGE = "kokoro-js@1.2.1"
TARBALL_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
TARBALL_URL = "https://registry.npmjs.org/kokoro-js/-/kokoro-js-1.2.1.tgz"
FOLDER = "kokoro-js-1.2.1-voices"
VOICE_BYTES = 522_240  # 510 x 1 x 256 float32
SETUP_COMMAND = "make setup (or: python -m stepaudio.engines.lite.kokoro_voices)"


@dataclass(frozen=True)
class KokoroVoice:
    """A built-in voice: `name` is what users type, `file` Kokoro's own name, `language` its G2P."""

    name: str
    file: str
    language: Literal["zh", "en", "ja"]
    female: bool
    sha256: str

    @property
    def british(self) -> bool:
        return self.file.startswith("b")

    def spec(self) -> FileSpec:
        return FileSpec(f"{self.file}.bin", VOICE_BYTES, self.sha256, ())


def _voice(name: str, file: str, sha256: str) -> KokoroVoice:
    language = {"z": "zh", "a": "en", "b": "en", "j": "ja"}[file[0]]
    return KokoroVoice(name, file, language, file[1] == "f", sha256)  # type: ignore[arg-type]


# Whisper-base round trips (MODELS.md): zm_yunjian and zm_yunxi 0.6 % CER, zf_xiaobei 1.2 %, zf_xiaoyi 1.8 %,
# zf_xiaoxiao 3.0 %; zf_xiaoni (44 %) is not offered.
CATALOG: tuple[KokoroVoice, ...] = (
    _voice("zh-yunjian", "zm_yunjian", "de48a00bdbf3649f07162269a2b6e0513604389bfac8a2e6c75cb34b323ad6fa"),
    _voice("zh-yunxi", "zm_yunxi", "7243892fb4e560d47014090ddf010f8b8b790f3c6b029ff82b2ac06aa4e27c8b"),
    _voice("zh-yunxia", "zm_yunxia", "6b2b8fc15b3df19a368daebe5c581c7fabf433ee5b8a17ffd6b3d723cff8936d"),
    _voice("zh-yunyang", "zm_yunyang", "261e2c89470534dbbcb8fd98b8fdc495ec94063d9bb6c8277f7be43cccba3f42"),
    _voice("zh-xiaobei", "zf_xiaobei", "5dde6e1c9c4f12c8b327bc29c0cee361a23b52b952c04636858ba637ec66e640"),
    _voice("zh-xiaoyi", "zf_xiaoyi", "bc1555c5c486099196ac254bae5e0bb543c121952a3092f50b7d8724f1bc36b3"),
    _voice("zh-xiaoxiao", "zf_xiaoxiao", "03adb5d5e3ddd88b047954e974e651cb0a4b524c985057e5d872e962c7be1169"),
    _voice("en-heart", "af_heart", "d583ccff3cdca2f7fae535cb998ac07e9fcb90f09737b9a41fa2734ec44a8f0b"),
    _voice("en-bella", "af_bella", "f69d836209b78eb8c66e75e3cda491e26ea838a3674257e9d4e5703cbaf55c8b"),
    _voice("en-nova", "af_nova", "18778272caa0d0eebaea251c35fd635f038434f9eee5e691d02a174bd328414f"),
    _voice("en-alloy", "af_alloy", "c4a6b876047fd7fb472edf4ebd63cfac7c3b958a7cae7c106e8f038ca6308c45"),
    _voice("en-michael", "am_michael", "1d1f21dd8da39c30705cd4c75d039d265e9bc4a2a93ed09bc9e1b1225eb95ba1"),
    _voice("en-echo", "am_echo", "3968b92c3c4cd1c4416dbded36c13eaa388a90d5788d02a13e4d781f5f8cf3c3"),
    _voice("en-onyx", "am_onyx", "da5d135b424164916d75a68ffb4c2abce3d7d5ccc82dd1ee6cf447ce286145e6"),
    _voice("en-puck", "am_puck", "fcf73c989033e9233e0b98713eca600c8c74dcc1614b37009d5450ff4a2274a0"),
    _voice("en-gb-emma", "bf_emma", "669fe0647f9dd04fcab92f1439a40eeb4c8b4ab1f82e4996fe3d918ce4a63b73"),
    _voice("en-gb-george", "bm_george", "c4b235a4c1f2cd3b939fed08b899ce9385638b763f7b73a59616c4fc9bd6c9bc"),
    _voice("en-gb-fable", "bm_fable", "f889083196807b4adb15e9204252165f503b8d33d3982e681c52443c49d798f1"),
    _voice("ja-alpha", "jf_alpha", "56b479360aad9f367aeb8cef908f9201cf48b4555e488c5f4590c9dfcd978bb6"),
    _voice("ja-gongitsune", "jf_gongitsune", "0f1181f3772d27b7c12aaf4bcd71e31b186c4146e330d074a3dc64ee392af396"),
    _voice("ja-nezumi", "jf_nezumi", "13cb71eebb0b48739d444558322aa35a8c9a489b80e1e631f14d2e6aea93026b"),
    _voice("ja-tebukuro", "jf_tebukuro", "29c6c0561b4288d59639677bebe7533c919743d5ea68d0d2ae992644beea6696"),
    _voice("ja-kumo", "jm_kumo", "09e959d239724c734d65661f06f14cdabcddfd476bfaaad905a937099ae9e64f"),
)
BY_NAME: dict[str, KokoroVoice] = {v.name: v for v in CATALOG}
# The default per language and voice gender, for text whose voice was not named (or was an OpenAI name).
DEFAULTS: dict[tuple[str, bool], str] = {
    ("zh", False): "zh-yunjian", ("zh", True): "zh-xiaobei", ("ja", True): "ja-alpha", ("ja", False): "ja-kumo",
    ("en", True): "en-heart", ("en", False): "en-michael",
}
# OpenAI's voice names: a gender, and the Kokoro voice of that name for English where Kokoro has one. The
# language still follows the text (an OpenAI voice reading Mandarin speaks with a Mandarin voice).
OPENAI_VOICES: dict[str, tuple[bool, str | None]] = {
    "alloy": (True, "en-alloy"), "nova": (True, "en-nova"), "echo": (False, "en-echo"), "onyx": (False, "en-onyx"),
    "fable": (False, "en-gb-fable"), "shimmer": (True, None), "coral": (True, None), "sage": (True, None),
    "marin": (True, None), "ash": (False, None), "ballad": (False, None), "verse": (False, None),
    "cedar": (False, None),
}


class KokoroVoicesMissing(CheckpointError):
    """The voice tables are not installed (or fail their sha256); the message names the command that fixes it."""


def voices_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or resolver.default_cache_dir()) / FOLDER


def voice_path(voice: KokoroVoice, cache_dir: Path | None = None) -> Path:
    """The verified table of `voice` (hashed once, then trusted by its stamp), or KokoroVoicesMissing."""
    path = voices_dir(cache_dir) / voice.spec().name
    if not resolver.is_valid(path, voice.spec()):
        state = "fails its size or sha256 check" if path.exists() else "is not installed"
        raise KokoroVoicesMissing(
            f"the Kokoro voice {voice.name} ({path}) {state}: the voices come from the npm package {NPM_PACKAGE}; "
            f"run {SETUP_COMMAND} (needs npm), or pass --tarball with {TARBALL_URL}")
    return path


def installed(cache_dir: Path | None = None) -> list[KokoroVoice]:
    """The catalogue voices present with the right size (hashes are checked when a voice loads)."""
    folder = voices_dir(cache_dir)
    return [v for v in CATALOG if (folder / v.spec().name).is_file()
            and (folder / v.spec().name).stat().st_size == VOICE_BYTES]


def install(cache_dir: Path | None = None, tarball: Path | None = None, npm: str = "npm") -> Path:
    """Fetch kokoro-js with `npm pack` (or read `tarball`), verify it and write the catalogue's voices."""
    target = voices_dir(cache_dir)
    if all(resolver.is_valid(target / v.spec().name, v.spec()) for v in CATALOG):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as work:
        source = tarball or _npm_pack(npm, Path(work))
        digest = resolver.sha256_file(source)
        if digest != TARBALL_SHA256:
            raise StepAudioError(f"{source} has sha256 {digest}, expected {TARBALL_SHA256} for {NPM_PACKAGE}")
        with tarfile.open(source, "r:gz") as archive:
            for voice in CATALOG:
                _extract(archive, voice, target)
    return target


def _npm_pack(npm: str, into: Path) -> Path:
    if shutil.which(npm) is None:
        raise KokoroVoicesMissing(
            f"npm is not installed: Kokoro's voices come from the npm package {NPM_PACKAGE}. Install Node.js and npm "
            f"(e.g. apt-get install npm) and run {SETUP_COMMAND}, or download {TARBALL_URL} and run "
            "python -m stepaudio.engines.lite.kokoro_voices --tarball <file>")
    result = subprocess.run([npm, "pack", NPM_PACKAGE, "--silent", "--pack-destination", str(into)],
                            capture_output=True, text=True, check=False, timeout=600)
    packed = sorted(into.glob("kokoro-js-*.tgz"))
    if result.returncode != 0 or not packed:
        raise KokoroVoicesMissing(f"npm pack {NPM_PACKAGE} failed ({result.returncode}): "
                                  f"{(result.stderr or result.stdout).strip()[-500:]}")
    return packed[0]


def _extract(archive: tarfile.TarFile, voice: KokoroVoice, target: Path) -> None:
    spec = voice.spec()
    member = archive.extractfile(f"package/voices/{spec.name}")
    if member is None:
        raise StepAudioError(f"{NPM_PACKAGE} has no voices/{spec.name}")
    data = member.read()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != spec.size or digest != spec.sha256:
        raise StepAudioError(f"voices/{spec.name} in {NPM_PACKAGE} is {len(data)} bytes with sha256 {digest}, "
                             f"expected {spec.size} bytes with sha256 {spec.sha256}")
    final = target / spec.name
    tmp = target / f".{spec.name}.{os.getpid()}.tmp"
    try:
        with tmp.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    resolver.write_stamp(final, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stepaudio.engines.lite.kokoro_voices",
                                     description=f"Install Kokoro's voices from the npm package {NPM_PACKAGE}.")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $STEPAUDIO_CACHE or ~/.cache/stepaudio")
    parser.add_argument("--tarball", type=Path, default=None, help=f"a downloaded {TARBALL_URL} instead of npm")
    args = parser.parse_args(argv)
    try:
        folder = install(args.cache_dir, args.tarball)
    except StepAudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(CATALOG)} Kokoro voices verified in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
