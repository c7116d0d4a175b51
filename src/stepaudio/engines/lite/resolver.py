"""Find a model's files: a local path or hub id first, else assemble it from registry packages into a cache.

Assembly writes each file to a temporary name beside its target, checks size and sha256, then renames it,
so a killed process never leaves a file that looks complete. A verified file gets a stamp (size, mtime,
sha256); later loads trust a matching stamp instead of rehashing hundreds of megabytes, and a file whose
stamp does not match (edited, truncated, corrupted) is hashed again and rebuilt when wrong.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from stepaudio.engines.lite.models import ALIASES, MODELS, FileSpec, ModelSpec
from stepaudio.errors import CheckpointError, MissingExtraError, StepAudioError

STAMP_SUFFIX = ".verified"


class ModelPackageMissing(MissingExtraError):
    """A registry package that carries model weights is not installed; the message names the pip command."""

    def __init__(self, spec: ModelSpec, module: str) -> None:
        StepAudioError.__init__(
            self, f"model {spec.name!r} needs the package providing {module!r}: {spec.pip_command}"
        )
        self.extra = "lite"
        self.module = module


def default_cache_dir() -> Path:
    env = os.environ.get("STEPAUDIO_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "stepaudio"


def lookup(name: str) -> ModelSpec:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in MODELS:
        raise StepAudioError(f"unknown lite model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[key]


def resolve(
    spec: ModelSpec, local: str | os.PathLike[str] | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The path a loader opens: `local` (a directory, a file or a hub id) when given, else the assembled cache."""
    if local is not None:
        return _resolve_local(spec, str(local))
    directory = assemble(spec, Path(cache_dir) if cache_dir is not None else default_cache_dir())
    return directory / spec.main_file if spec.main_file else directory


def assemble(spec: ModelSpec, cache_dir: Path) -> Path:
    """Build (or check) `cache_dir/<model name>/` from the registry packages; returns the directory."""
    target = cache_dir / spec.name
    target.mkdir(parents=True, exist_ok=True)
    for file in spec.files:
        path = target / file.name
        if is_valid(path, file):
            continue
        _build(spec, file, path)
    return target


def _resolve_local(spec: ModelSpec, local: str) -> Path:
    path = Path(local).expanduser()
    if path.exists():
        return path
    looks_like_hub_id = local.count("/") == 1 and not local.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise CheckpointError(f"model path {local!r} for {spec.name} does not exist")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        raise CheckpointError(
            f"{local!r} is not a local path and HF_HUB_OFFLINE is set; drop the option to use the packaged "
            f"model ({spec.pip_command})"
        )
    return _download(spec, local)


def _download(spec: ModelSpec, repo_id: str) -> Path:
    """Fetch a hub repository (only when the user asked for a hub id and is online)."""
    try:
        import huggingface_hub
    except ImportError as exc:
        raise MissingExtraError("lite", "huggingface_hub") from exc
    try:
        if spec.main_file and spec.hub_files:
            return Path(huggingface_hub.hf_hub_download(repo_id, spec.hub_files[0]))
        return Path(huggingface_hub.snapshot_download(repo_id))
    except Exception as exc:
        raise CheckpointError(f"could not fetch {repo_id!r} from the model hub: {exc}") from exc


def _part_path(spec: ModelSpec, module: str, relative: str) -> Path:
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ModelPackageMissing(spec, module)
    path = Path(next(iter(found.submodule_search_locations))) / relative
    if not path.is_file():
        raise CheckpointError(f"package {module!r} lacks {relative}; reinstall it: {spec.pip_command}")
    return path


def _build(spec: ModelSpec, file: FileSpec, path: Path) -> None:
    sources = [_part_path(spec, module, rel) for module, rel in file.parts]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    size = 0
    try:
        with tmp.open("wb") as out:
            for source in sources:
                with source.open("rb") as handle:
                    for block in iter(lambda h=handle: h.read(1 << 22), b""):  # type: ignore[misc]
                        digest.update(block)
                        size += len(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if size != file.size or digest.hexdigest() != file.sha256:
            raise CheckpointError(
                f"{spec.name}/{file.name} assembled from {', '.join(m for m, _ in file.parts)} is "
                f"{size} bytes with sha256 {digest.hexdigest()}, expected {file.size} bytes with "
                f"sha256 {file.sha256}; reinstall: {spec.pip_command}"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_stamp(path, file)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + STAMP_SUFFIX)


def write_stamp(path: Path, file: FileSpec) -> None:
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file.sha256}
    tmp = _stamp_path(path).with_name(f".{path.name}.{os.getpid()}.stamp.tmp")
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, _stamp_path(path))


def is_valid(path: Path, file: FileSpec) -> bool:
    """True when `path` holds `file`: a matching stamp, or a full hash that matches (then stamped)."""
    if not path.is_file():
        return False
    stat = path.stat()
    if stat.st_size != file.size:
        return False
    try:
        stamp = json.loads(_stamp_path(path).read_text())
    except (OSError, ValueError):
        stamp = None
    if stamp == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file.sha256}:
        return True
    if sha256_file(path) != file.sha256:
        return False
    write_stamp(path, file)
    return True

