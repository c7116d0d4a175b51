"""Which model files an engine loads for a role, as `ModelRecord`s with sha256, for report provenance.

Numbers depend on the exact weights, so reports hash the files the engine would open, found the same way
the engine finds them (the lite resolver's cache, the Step release folders), not names alone.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stepaudio.eval.report import ModelRecord, model_record


def engine_model_records(engine: str, options: Mapping[str, Any], roles: Iterable[str]) -> list[ModelRecord]:
    """Records for the `roles` ('asr', 'tts') of engine `engine` built with `options`."""
    wanted = set(roles)
    if engine == "lite":
        return _lite(options, wanted)
    if engine == "step":
        return _step(options, wanted)
    if engine == "step2":
        return _step2(options, wanted)
    return [ModelRecord(role, f"{engine} engine", (), None, "files unknown for this engine") for role in sorted(wanted)]


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _lite(options: Mapping[str, Any], roles: set[str]) -> list[ModelRecord]:
    from stepaudio.engines.lite import models, resolver
    from stepaudio.engines.lite.engine import LiteConfig

    config = LiteConfig.from_options(dict(options))
    records = []
    if "asr" in roles:
        key = models.ALIASES.get(config.asr_model.lower(), config.asr_model.lower())
        if key in models.MODELS:
            path = resolver.resolve(models.MODELS[key], cache_dir=config.cache_dir)
            records.append(model_record("asr", f"{key} (faster-whisper int8)", path,
                                        version=f"faster-whisper {_version('faster-whisper')}"))
        else:
            records.append(model_record("asr", "whisper (local)", config.asr_model,
                                        version=f"faster-whisper {_version('faster-whisper')}"))
    if "tts" in roles:
        voice = Path(config.tts_model) if config.tts_model else resolver.resolve(models.PIPER_JOE,
                                                                                cache_dir=config.cache_dir)
        records.append(model_record("tts", "piper voice (English)", voice,
                                    version=f"piper-tts {_version('piper-tts')}"))
        sidecar = voice.with_name(voice.name + ".json")
        if sidecar.is_file():
            records.append(model_record("tts", "piper voice config", sidecar))
        records.append(_espeak_record())
    return records


def _espeak_record() -> ModelRecord:
    try:
        import espeakng_loader
    except ImportError:
        return ModelRecord("tts", "espeak-ng", (), None, "espeakng-loader not installed")
    library = Path(espeakng_loader.get_library_path())
    record = model_record("tts", "espeak-ng library (Mandarin and other voices)", library,
                          version=f"espeakng-loader {_version('espeakng-loader')}")
    data = Path(espeakng_loader.get_data_path())
    dictionary = data / "cmn_dict"
    if dictionary.is_file():
        extra = model_record("tts", "espeak-ng cmn_dict", dictionary)
        return ModelRecord(record.role, record.name, record.files + extra.files, record.version, record.note)
    return record


def _step(options: Mapping[str, Any], roles: set[str]) -> list[ModelRecord]:
    from stepaudio.engines.step.paths import CHAT_DIR, TOKENIZER_DIR, TTS_DIR

    root = options.get("model_path")
    if not root:
        return [ModelRecord(role, "step engine", (), None, "no --model-path given") for role in sorted(roles)]
    base = Path(str(root))
    folders = {"asr": (TOKENIZER_DIR, CHAT_DIR), "tts": (TOKENIZER_DIR, TTS_DIR)}
    records = []
    seen: set[str] = set()
    for role in sorted(roles):
        for name in folders.get(role, ()):
            if name in seen or not (base / name).is_dir():
                continue
            seen.add(name)
            records.append(model_record(role, name, base / name))
    return records


def _step2(options: Mapping[str, Any], roles: set[str]) -> list[ModelRecord]:
    """The release folder's own files (config, shards, tokenizer) for every role, `token2wav/` and the voices
    for tts and chat (speech comes out of them); a served model is named by its URL (its weights are there)."""
    from stepaudio.engines.step2.paths import TOKEN2WAV_DIR, VOICES_DIR

    root, served = options.get("model_path"), options.get("server_url")
    records = []
    for role in sorted(roles):
        if served:
            records.append(ModelRecord(role, f"Step-Audio 2 mini served at {served}", (),
                                       str(options.get("server_model") or "step-audio-2-mini"),
                                       "LM and audio encoder run on the server"))
        elif root:
            release = Path(str(root))
            files = tuple(f for path in sorted(release.iterdir()) if path.is_file()
                          for f in model_record(role, path.name, path).files)
            records.append(ModelRecord(role, f"{release.name} (LM, audio encoder, tokenizer)", files))
        if not root:
            if not served:
                records.append(ModelRecord(role, "step2 engine", (), None, "no --model-path given"))
            continue
        if role in ("tts", "chat"):
            base = Path(str(root))
            voices = Path(str(options["voices_dir"])) if options.get("voices_dir") else base / VOICES_DIR
            for name, folder in (("token2wav", base / TOKEN2WAV_DIR), ("voices", voices)):
                if folder.is_dir():
                    records.append(model_record(role, name, folder))
    return records
