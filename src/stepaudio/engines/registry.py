"""Engines by name. Each engine module is imported only when asked for, so a missing optional dependency
becomes an error naming the extra to install instead of an import failure at start-up."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stepaudio.engines.base import Engine
from stepaudio.errors import MissingExtraError, StepAudioError


@dataclass(frozen=True)
class EngineSpec:
    name: str
    module: str
    factory: str
    extra: str
    description: str


ENGINES: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        EngineSpec("lite", "stepaudio.engines.lite.engine", "create_engine", "lite",
                   "small packaged CPU models: Whisper, Qwen2.5-Coder-0.5B-Instruct GGUF, Piper / espeak-ng"),
        EngineSpec("step", "stepaudio.engines.step.engine", "create_engine", "step",
                   "Step-Audio models: tokenizer, TTS-3B, Chat (local or vLLM-served), flow + HiFT"),
        EngineSpec("editx", "stepaudio.engines.editx.engine", "create_engine", "step",
                   "Step-Audio-EditX: zero-shot cloning and iterative speech editing (3B Step1 LM, 24 kHz decoder)"),
        EngineSpec("step2", "stepaudio.engines.step2.engine", "create_engine", "step",
                   "Step-Audio 2 mini: audio in as encoder features, Qwen2.5 LM, CosyVoice2 token2wav at 24 kHz"),
    )
}


def engine_names() -> list[str]:
    return list(ENGINES)


def create_engine(name: str, **options: Any) -> Engine:
    """Build the engine called `name` with engine-specific options (model paths, device, ...)."""
    spec = ENGINES.get(name)
    if spec is None:
        raise StepAudioError(f"unknown engine {name!r}; available: {', '.join(ENGINES)}")
    factory = _load_factory(spec)
    engine = factory(**options)
    if not isinstance(engine, Engine):
        raise StepAudioError(f"engine {name!r} factory returned {type(engine).__name__}, not an Engine")
    return engine


def _load_factory(spec: EngineSpec) -> Callable[..., Any]:
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if missing.startswith("stepaudio"):
            raise StepAudioError(f"engine {spec.name!r} is not available in this build ({missing})") from exc
        raise MissingExtraError(spec.extra, missing) from exc
    factory: Callable[..., Any] = getattr(module, spec.factory)
    return factory
