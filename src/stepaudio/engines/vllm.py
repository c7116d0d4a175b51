"""How to serve the Step1 language models with vLLM (tensor / pipeline parallel, OpenAI-compatible).

vLLM's `step1` model ties `lm_head` to the embedding unless the config says otherwise, while the Step-Audio
checkpoints keep them separate: the command must override `tie_word_embeddings`.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

# Weight bytes in bf16 (REFERENCE.md §1) and the served names the Step engine asks for by default.
MODELS = {
    "chat": ("Step-Audio-Chat", "step-audio-chat", 263_893_180_416),
    "tts": ("Step-Audio-TTS-3B", "step-audio-tts-3b", 7_059_412_992),
}


@dataclass(frozen=True)
class VllmPlan:
    model_dir: Path
    served_name: str
    tensor_parallel: int
    pipeline_parallel: int = 1
    port: int = 8000
    max_model_len: int = 32768
    gpu_memory_utilization: float = 0.9

    def argv(self) -> list[str]:
        return [
            "vllm", "serve", str(self.model_dir),
            "--served-model-name", self.served_name,
            "--trust-remote-code",
            "--dtype", "bfloat16",
            "--hf-overrides", json.dumps({"tie_word_embeddings": False}),
            "--tensor-parallel-size", str(self.tensor_parallel),
            "--pipeline-parallel-size", str(self.pipeline_parallel),
            "--max-model-len", str(self.max_model_len),
            "--gpu-memory-utilization", str(self.gpu_memory_utilization),
            "--port", str(self.port),
        ]

    def command(self) -> str:
        return " ".join(shlex.quote(part) for part in self.argv())


def minimum_tensor_parallel(weight_bytes: int, gpu_memory_gib: float, utilization: float = 0.9) -> int:
    """Smallest power-of-two GPU count (the head counts divide by it) holding the weights in ~90% of the
    memory vLLM may use, the rest for the KV cache: 4 x 80 GB for the 130B chat model, as the reference."""
    usable = gpu_memory_gib * 2**30 * utilization * 0.9
    count = max(1, math.ceil(weight_bytes / usable))
    return 1 << (count - 1).bit_length()


def plan(
    model: str,
    model_path: Path,
    tensor_parallel: int | None = None,
    gpu_memory_gib: float = 80.0,
    pipeline_parallel: int = 1,
    port: int = 8000,
    max_model_len: int = 32768,
) -> VllmPlan:
    """A plan for `model` ('chat' or 'tts'); `model_path` is the model folder or the folder holding it."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    folder, served, weight_bytes = MODELS[model]
    model_dir = model_path if model_path.name == folder else model_path / folder
    per_stage = tensor_parallel or max(
        1, minimum_tensor_parallel(weight_bytes, gpu_memory_gib) // max(1, pipeline_parallel)
    )
    return VllmPlan(model_dir, served, per_stage, pipeline_parallel, port, max_model_len)
