"""Serving the Step1 language models with vLLM: the `vllm serve` command and the memory arithmetic that sizes it.

Upstream vLLM registers `Step1ForCausalLM` from 0.15.0 on (read in the wheels: the model registry of 0.14.1
lacks it; 0.15.0 lists it with `models/step1.py`, sqrt-ALiBi, tensor and pipeline parallel, quantized linear
layers). What the Step-Audio release needs beyond `vllm serve DIR`:
- `--hf-overrides '{"tie_word_embeddings": false}'`: vLLM ties `lm_head` to the embedding unless the config says
  otherwise, and the release's config does not, while its `lm_head` is a separate matrix.
- `--attention-backend TRITON_ATTN`: only the Triton backend implements sqrt-ALiBi; with vLLM's default CUDA
  backend the model refuses to build ("use_alibi_sqrt is not supported by backend").
- `--trust-remote-code`: transformers does not know `model_type: step1`, so the config class comes from the
  folder's `configuration_step1.py` (the model itself runs vLLM's code, not the folder's).
- `--max-model-len` from the config's `max_seq_len` (32768 in the release).
Older vLLM needs the vendor's fork (branch `add-step1-model`) and its flash-attention library, found through
`OPTIMUS_LIB_PATH` in the model folder's `lib/`.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepaudio.errors import CheckpointError, StepAudioError
from stepaudio.lm.step1.config import NAMED_SHAPES, Step1Config

FIRST_UPSTREAM_VLLM = "0.15.0"
FORK_URL = "https://github.com/stepfun-ai/vllm/tree/add-step1-model"
GIB = 2**30


class ServingPlanError(StepAudioError, ValueError):
    """A serving request that cannot work: a format the folder is not in, or no GPU count that holds it."""


@dataclass(frozen=True)
class ServedModel:
    """A Step1 release as vLLM serves it: its folder name, the name the Step engine asks for, its shape."""

    key: str
    folder: str
    served_name: str
    shape: Step1Config


MODELS: dict[str, ServedModel] = {
    "chat": ServedModel("chat", "Step-Audio-Chat", "step-audio-chat", NAMED_SHAPES["chat-130b"]),
    "tts": ServedModel("tts", "Step-Audio-TTS-3B", "step-audio-tts-3b", NAMED_SHAPES["tts-3b"]),
}


@dataclass(frozen=True)
class WeightFormat:
    """How the linear layers' weights are stored; embeddings, lm_head and norms stay bf16 in every format
    (vLLM never quantizes the embedding, and the quantization recipes leave lm_head out)."""

    name: str
    bits: int
    group_size: int | None  # weights per scale; None: one scale per output channel
    scale_bytes: int  # bytes per scale
    zero_bytes: float  # bytes per group for an asymmetric zero point (AWQ), 0 otherwise
    vllm: str  # what vLLM runs

    def linear_bytes(self, rows: int, cols: int) -> float:
        """Bytes of one `rows x cols` (out x in) weight with its scales."""
        groups = rows * (1 if self.group_size is None else math.ceil(cols / self.group_size))
        scales = 0.0 if self.bits == 16 else groups * (self.scale_bytes + self.zero_bytes)
        return rows * cols * self.bits / 8 + scales


FORMATS: dict[str, WeightFormat] = {
    "bf16": WeightFormat("bf16", 16, None, 0, 0.0, "bf16 weights and compute"),
    "fp8": WeightFormat("fp8", 8, None, 4, 0.0,
                        "FP8 E4M3 weights, per-channel scales; FP8 matmuls from Ada/Hopper on, weight-only "
                        "(Marlin) on Ampere"),
    "int8": WeightFormat("int8", 8, None, 4, 0.0, "W8A8 INT8 (compressed-tensors), per-channel scales"),
    "int4": WeightFormat("int4", 4, 128, 2, 0.5, "W4A16 INT4, groups of 128 (AWQ/GPTQ, Marlin kernels)"),
}


@dataclass(frozen=True)
class Gpu:
    """Memory as CUDA reports it (nvidia-smi MiB) and the spec-sheet memory bandwidth."""

    key: str
    name: str
    memory_mib: int
    bandwidth_gb_s: float

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * 2**20


GPUS: dict[str, Gpu] = {
    "h100": Gpu("h100", "H100 80GB (SXM)", 81559, 3350),
    "h200": Gpu("h200", "H200 141GB", 143771, 4800),
    "a100-80": Gpu("a100-80", "A100 80GB", 81920, 2039),
    "a100-40": Gpu("a100-40", "A100 40GB", 40960, 1555),
    "l40s": Gpu("l40s", "L40S 48GB", 46068, 864),
    "rtx4090": Gpu("rtx4090", "RTX 4090 24GB", 24564, 1008),
}


@dataclass(frozen=True)
class Weights:
    """Parameter and byte counts of one Step1 model in one format."""

    linear_params: int  # q, k, v, o, gate, up, down of every layer
    embedding_params: int  # embed_tokens and the untied lm_head
    norm_params: int
    linear_bytes: float  # per layer
    layers: int

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params + self.norm_params

    @property
    def bytes(self) -> float:
        return self.linear_bytes * self.layers + 2 * (self.embedding_params + self.norm_params)


def weights(shape: Step1Config, fmt: WeightFormat) -> Weights:
    """The arithmetic of REFERENCE §2: no biases, separate lm_head, GQA k/v of `groups x head_dim` columns."""
    h, i, kv = shape.hidden_size, shape.intermediate_size, shape.kv_dim
    matrices = [(h, h), (kv, h), (kv, h), (h, h), (i, h), (i, h), (h, i)]  # (out, in): q k v o gate up down
    per_layer = sum(rows * cols for rows, cols in matrices)
    return Weights(
        linear_params=per_layer * shape.num_hidden_layers,
        embedding_params=2 * shape.vocab_size * h,
        norm_params=(2 * shape.num_hidden_layers + 1) * h,
        linear_bytes=sum(fmt.linear_bytes(rows, cols) for rows, cols in matrices),
        layers=shape.num_hidden_layers,
    )


def kv_bytes_per_token(shape: Step1Config, dtype_bytes: int = 2) -> int:
    """K and V of every layer for one token: 2 x layers x groups x head_dim x bytes."""
    return 2 * shape.num_hidden_layers * shape.kv_dim * dtype_bytes


def tensor_parallel_sizes(shape: Step1Config, limit: int = 8) -> list[int]:
    """Sizes vLLM accepts: the query heads split evenly and the KV groups either split or replicate evenly."""
    heads, groups = shape.num_attention_heads, shape.num_attention_groups
    return [t for t in (1, 2, 4, 8, 16) if t <= limit and heads % t == 0 and (groups % t == 0 or t % groups == 0)]


@dataclass(frozen=True)
class MemoryPlan:
    """Per-GPU bytes for one layout: the weights of the largest pipeline stage split over the tensor-parallel
    GPUs, one sequence of `context` tokens of KV cache, and what vLLM may use (utilization x memory minus a
    reserve for activations, CUDA graphs and the CUDA context: an assumption, not a measurement)."""

    model: ServedModel
    fmt: WeightFormat
    gpu: Gpu
    tensor_parallel: int
    pipeline_parallel: int
    context: int
    weights_per_gpu: float
    kv_per_token_per_gpu: float
    usable_per_gpu: float

    @property
    def gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def kv_per_gpu(self) -> float:
        return self.kv_per_token_per_gpu * self.context

    @property
    def fits(self) -> bool:
        return self.weights_per_gpu + self.kv_per_gpu <= self.usable_per_gpu

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens of KV cache the GPUs hold after the weights (shared by every running sequence)."""
        return max(0, int((self.usable_per_gpu - self.weights_per_gpu) / self.kv_per_token_per_gpu))


def memory_plan(
    model: ServedModel,
    fmt: WeightFormat,
    gpu: Gpu,
    tensor_parallel: int,
    pipeline_parallel: int = 1,
    context: int | None = None,
    utilization: float = 0.9,
    reserve_gib: float = 3.0,
) -> MemoryPlan:
    shape = model.shape
    w = weights(shape, fmt)
    stage_layers = math.ceil(shape.num_hidden_layers / pipeline_parallel)
    # One stage holds the embedding, the last one lm_head (both with one stage); each splits over TP.
    head_params = w.embedding_params if pipeline_parallel == 1 else w.embedding_params // 2
    stage_bytes = w.linear_bytes * stage_layers + 2 * (head_params + (2 * stage_layers + 1) * shape.hidden_size)
    groups_per_gpu = max(1, shape.num_attention_groups // tensor_parallel)
    kv_per_token = 2 * stage_layers * groups_per_gpu * shape.head_dim * 2
    return MemoryPlan(
        model=model, fmt=fmt, gpu=gpu, tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel,
        context=shape.max_seq_len if context is None else context,
        weights_per_gpu=stage_bytes / tensor_parallel,
        kv_per_token_per_gpu=kv_per_token,
        usable_per_gpu=utilization * gpu.memory_bytes - reserve_gib * GIB,
    )


def smallest_fit(
    model: ServedModel, fmt: WeightFormat, gpu: Gpu, context: int | None = None, gpus_per_node: int = 8
) -> MemoryPlan:
    """The fewest GPUs that hold the weights and one full-context sequence: tensor parallel inside one node
    first; when a whole node is not enough, one pipeline stage per node (tensor parallel inside each)."""
    sizes = tensor_parallel_sizes(model.shape, gpus_per_node)
    candidates = [memory_plan(model, fmt, gpu, tp, 1, context) for tp in sizes]
    candidates += [memory_plan(model, fmt, gpu, sizes[-1], nodes, context) for nodes in range(2, 9)]
    for plan in candidates:
        if plan.fits:
            return plan
    raise ServingPlanError(f"{model.folder} in {fmt.name} does not fit 8 nodes of {sizes[-1]} x {gpu.name}")


def checkpoint_format(model_dir: Path) -> str | None:
    """The weight format a folder's config.json declares (compressed-tensors, AWQ, GPTQ, FP8), 'bf16' for
    none, None when there is no config.json (the folder is on another machine)."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON ({exc})") from exc
    quant = config.get("quantization_config")
    if not isinstance(quant, dict):
        return "bf16"
    method = str(quant.get("quant_method", "")).lower()
    if method in ("awq", "gptq"):
        return f"int{quant.get('bits', 4)}"
    if method == "fp8":
        return "fp8"
    for group in (quant.get("config_groups") or {}).values():
        spec = group.get("weights") or {}
        bits, kind = spec.get("num_bits"), spec.get("type")
        if bits == 8 and kind == "float":
            return "fp8"
        if kind == "int" and bits in (4, 8):
            return f"int{bits}"
    raise CheckpointError(f"{config_path}: quantization_config {method or quant!r} is not one of "
                          f"{', '.join(FORMATS)}")


def config_max_len(model_dir: Path, default: int) -> int:
    """`max_seq_len` from the folder's config.json (what vLLM would derive), else the release value."""
    config_path = model_dir / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{config_path} is not valid JSON ({exc})") from exc
        for key in ("max_seq_len", "max_position_embeddings"):
            if isinstance(config.get(key), int):
                return int(config[key])
    return default


@dataclass(frozen=True)
class VllmPlan:
    """One `vllm serve` command (upstream, or the vendor fork for older vLLM)."""

    model_dir: Path
    served_name: str
    tensor_parallel: int
    pipeline_parallel: int = 1
    port: int = 8000
    max_model_len: int = 32768
    gpu_memory_utilization: float = 0.9
    quantization: str | None = None  # a vLLM --quantization method for a bf16 folder (fp8 at load time)
    ray: bool = False  # pipeline stages on several nodes: Ray runs the workers
    fork: bool = False

    def argv(self) -> list[str]:
        if self.fork:
            # The vendor's published command; its Step1 model neither ties lm_head nor needs a backend choice.
            return [
                "vllm", "serve", str(self.model_dir), "--served-model-name", self.served_name,
                "--trust-remote-code", "--dtype", "auto",
                "--tensor-parallel-size", str(self.tensor_parallel),
                *(["--pipeline-parallel-size", str(self.pipeline_parallel)] if self.pipeline_parallel > 1 else []),
                "--max-model-len", str(self.max_model_len), "--port", str(self.port),
            ]
        argv = [
            "vllm", "serve", str(self.model_dir),
            "--served-model-name", self.served_name,
            "--trust-remote-code",
            "--dtype", "bfloat16",
            "--hf-overrides", json.dumps({"tie_word_embeddings": False}),
            "--attention-backend", "TRITON_ATTN",
            "--tensor-parallel-size", str(self.tensor_parallel),
            "--pipeline-parallel-size", str(self.pipeline_parallel),
            "--max-model-len", str(self.max_model_len),
            "--gpu-memory-utilization", str(self.gpu_memory_utilization),
            "--port", str(self.port),
        ]
        if self.quantization:
            argv += ["--quantization", self.quantization]
        if self.ray:
            argv += ["--distributed-executor-backend", "ray"]
        return argv

    def env(self) -> dict[str, str]:
        return {"OPTIMUS_LIB_PATH": str(self.model_dir / "lib")} if self.fork else {}

    def command(self) -> str:
        prefix = [f"{k}={shlex.quote(v)}" for k, v in self.env().items()]
        return " ".join([*prefix, *(shlex.quote(part) for part in self.argv())])


def model_dir_of(model: ServedModel, model_path: Path) -> Path:
    """`model_path` itself when it is a model folder (has config.json or carries the release name), else the
    release folder inside it."""
    if (model_path / "config.json").is_file() or model_path.name == model.folder:
        return model_path
    return model_path / model.folder


@dataclass(frozen=True)
class Recipe:
    """A serve plan with the arithmetic behind its GPU count, rendered as shell lines with comments."""

    plan: VllmPlan
    memory: MemoryPlan
    gpus_per_node: int
    note: str | None = None

    @property
    def nodes(self) -> int:
        return math.ceil(self.memory.gpus / self.gpus_per_node)

    def lines(self) -> Iterator[str]:
        m, p = self.memory, self.plan
        w = weights(m.model.shape, m.fmt)
        yield (f"# {m.model.folder} ({w.params / 1e9:.1f} B parameters) in {m.fmt.name}: "
               f"{w.bytes / 1e9:.1f} GB of weights; {m.fmt.vllm}")
        yield (f"# {m.gpus} x {m.gpu.name}: tensor parallel {m.tensor_parallel} x pipeline {m.pipeline_parallel}; "
               f"per GPU {m.weights_per_gpu / GIB:.1f} GiB weights + {m.kv_per_gpu / GIB:.2f} GiB KV for one "
               f"{m.context}-token sequence <= {m.usable_per_gpu / GIB:.1f} GiB usable; "
               f"KV room for {m.kv_capacity_tokens:,} tokens in all")
        if self.note:
            yield f"# {self.note}"
        if p.fork:
            yield (f"# vLLM < {FIRST_UPSTREAM_VLLM}: the vendor fork ({FORK_URL}) with the flash-attention "
                   "library in the model folder's lib/")
        else:
            yield f'# pip install "vllm>={FIRST_UPSTREAM_VLLM}"   # first release whose registry has Step1ForCausalLM'
        if p.ray:
            yield (f"# {self.nodes} nodes of {self.gpus_per_node} GPUs, the same model path on each; "
                   "NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME name the interface between them")
            yield "ray start --head --port 6379                # on the first node"
            yield "ray start --address HEAD_IP:6379            # on every other node"
            yield "# then, on the first node:"
        yield p.command()


def recipe(
    model_key: str,
    model_path: Path,
    *,
    fmt: str | None = None,
    gpu: str = "h100",
    gpus_per_node: int = 8,
    tensor_parallel: int | None = None,
    pipeline_parallel: int | None = None,
    context: int | None = None,
    max_model_len: int | None = None,
    port: int = 8000,
    fork: bool = False,
) -> Recipe:
    """The serve command for `model_key` ('chat' or 'tts') with the fewest GPUs of `gpu` that hold it, unless
    the parallel sizes are given. `fmt` defaults to what the folder's config.json declares, else bf16."""
    if model_key not in MODELS:
        raise ServingPlanError(f"unknown model {model_key!r}; choose one of {', '.join(MODELS)}")
    if gpu not in GPUS:
        raise ServingPlanError(f"unknown GPU {gpu!r}; choose one of {', '.join(GPUS)}")
    model = MODELS[model_key]
    model_dir = model_dir_of(model, model_path)
    found = checkpoint_format(model_dir)
    chosen = fmt or found or "bf16"
    if chosen not in FORMATS:
        raise ServingPlanError(f"unknown format {chosen!r}; choose one of {', '.join(FORMATS)}")
    quantization, note = _quantization(chosen, found, model_dir)
    if fork and chosen != "bf16":
        raise ServingPlanError(f"the vendor fork serves the bf16 release only; {chosen} needs "
                               f'vllm>={FIRST_UPSTREAM_VLLM}')
    length = max_model_len or config_max_len(model_dir, model.shape.max_seq_len)
    context = min(context or length, length)
    if tensor_parallel is None and pipeline_parallel is None:
        memory = smallest_fit(model, FORMATS[chosen], GPUS[gpu], context, gpus_per_node)
    else:
        memory = memory_plan(model, FORMATS[chosen], GPUS[gpu], tensor_parallel or 1, pipeline_parallel or 1,
                             context)
        if (tensor_parallel or 1) not in tensor_parallel_sizes(model.shape, limit=16):
            raise ServingPlanError(f"tensor parallel {tensor_parallel} does not divide {model.folder}'s "
                                   f"{model.shape.num_attention_heads} heads and {model.shape.num_attention_groups} "
                                   f"KV groups; use one of {tensor_parallel_sizes(model.shape, limit=16)}")
        if not memory.fits:
            note = ((note + "; ") if note else "") + "WARNING: these sizes do not hold one full-context sequence"
    plan = VllmPlan(
        model_dir, model.served_name, memory.tensor_parallel, memory.pipeline_parallel, port, length,
        quantization=quantization, ray=memory.gpus > gpus_per_node, fork=fork,
    )
    return Recipe(plan, memory, gpus_per_node, note)


def _quantization(chosen: str, found: str | None, model_dir: Path) -> tuple[str | None, str | None]:
    """The --quantization flag and a note: FP8 can be made at load time from the bf16 folder; int8 and int4
    need a quantized checkpoint, which vLLM recognises from its config.json."""
    if found is None:
        if chosen in ("int8", "int4"):
            return None, f"expects a {chosen} compressed-tensors checkpoint at {model_dir}"
        return ("fp8" if chosen == "fp8" else None), None
    if chosen == found:
        return None, None
    if chosen == "fp8" and found == "bf16":
        return "fp8", "FP8 weights made by vLLM at load time from the bf16 folder"
    raise ServingPlanError(f"{model_dir} holds a {found} checkpoint, not {chosen}: point --model-path at the "
                           f"{chosen} folder (a compressed-tensors checkpoint) or drop --format")


def memory_table(context: int | None = None, gpus_per_node: int = 8) -> list[dict[str, Any]]:
    """The smallest GPU count for every model, format and GPU (what docs/serving.md tabulates)."""
    rows = []
    for model in MODELS.values():
        for fmt in FORMATS.values():
            row: dict[str, Any] = {"model": model.folder, "format": fmt.name,
                                   "weights_gb": round(weights(model.shape, fmt).bytes / 1e9, 1)}
            for gpu in GPUS.values():
                plan = smallest_fit(model, fmt, gpu, context, gpus_per_node)
                row[gpu.key] = (f"{plan.gpus}" if plan.pipeline_parallel == 1
                                else f"{plan.gpus} ({plan.tensor_parallel}x{plan.pipeline_parallel} PP)")
            rows.append(row)
    return rows


# Step-Audio 2 mini ------------------------------------------------------------------------------------------
# Not in upstream vLLM's registry. The vendor serves it with its fork (branch `step-audio2-mini`) in a docker
# image, with its own tokenizer mode, tool-call parser and audio parser: flags and image as the vendor's README
# gives them (verified there; not run here). vLLM-Omni serves it as two stages (thinker + token2wav) with
# `--omni` (its examples' README; inferred, not run here); it renders the speech itself, so the step2 engine's
# client, which reads the fork's `<audio_N>` codes, gets only the text from it.

STEP2_FORK_URL = "https://github.com/stepfun-ai/vllm/tree/step-audio2-mini"
STEP2_IMAGE = "stepfun2025/vllm:step-audio-2-v20250909"
STEP2_FOLDER = "Step-Audio-2-mini"
STEP2_SERVED = "step-audio-2-mini"
STEP2_MAX_MODEL_LEN = 16384  # the vendor's command
STEP2_MAX_NUM_SEQS = 32
# The fork's server options for this model (README): the tokenizer, tool-call and audio parsers it registers.
STEP2_FORK_FLAGS = ("--enable-auto-tool-choice", "--tool-call-parser", "step_audio_2", "--tokenizer-mode",
                    "step_audio_2", "--chat_template_content_format", "string", "--audio-parser",
                    "step_audio_2_tts_ta4", "--trust-remote-code")


@dataclass(frozen=True)
class Step2Sizes:
    """Parameters of Step-Audio 2 mini, counted on the modules of this codebase built without memory."""

    lm_params: int
    audio_params: int  # Whisper-style encoder + adaptor
    kv_bytes_per_token: int  # bf16 K and V of every layer

    @property
    def params(self) -> int:
        return self.lm_params + self.audio_params

    @property
    def bf16_bytes(self) -> int:
        return 2 * self.params


def step2_sizes() -> Step2Sizes:
    """The real shapes (REFERENCE-SA2 §1) on the meta device: exact for the modules that load the release."""
    import torch

    from stepaudio.audio_encoder.config import AudioEncoderConfig
    from stepaudio.audio_encoder.model import AudioEncoder
    from stepaudio.lm.qwen2.config import STEP_AUDIO2_MINI
    from stepaudio.lm.qwen2.model import Qwen2ForCausalLM

    audio_config = AudioEncoderConfig(n_mels=128, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20,
                                      n_audio_layer=32, llm_dim=STEP_AUDIO2_MINI.hidden_size)
    lm = Qwen2ForCausalLM(STEP_AUDIO2_MINI, device="meta")
    with torch.device("meta"):
        audio = AudioEncoder(audio_config)
    shape = STEP_AUDIO2_MINI
    return Step2Sizes(lm_params=sum(p.numel() for p in lm.parameters()),
                      audio_params=sum(p.numel() for p in audio.parameters()),
                      kv_bytes_per_token=2 * shape.num_hidden_layers * shape.kv_dim * 2)


@dataclass(frozen=True)
class Step2Recipe:
    """How to serve Step-Audio 2 mini on `tensor_parallel` GPUs of one type: the vendor's docker image (default),
    its fork installed (`docker=False`), or vLLM-Omni (`omni=True`)."""

    model_dir: Path
    gpu: Gpu
    tensor_parallel: int
    port: int = 8000
    max_model_len: int = STEP2_MAX_MODEL_LEN
    docker: bool = True
    omni: bool = False

    def argv(self) -> list[str]:
        if self.omni:
            return ["vllm", "serve", str(self.model_dir), "--omni", "--served-model-name", STEP2_SERVED, "--port",
                    str(self.port), "--trust-remote-code", "--enforce-eager"]
        served = "/" + STEP2_FOLDER if self.docker else str(self.model_dir)
        serve = ["vllm", "serve", served, "--served-model-name", STEP2_SERVED, "--port", str(self.port),
                 "--max-model-len", str(self.max_model_len), "--max-num-seqs", str(STEP2_MAX_NUM_SEQS),
                 "--tensor-parallel-size", str(self.tensor_parallel), *STEP2_FORK_FLAGS]
        if not self.docker:
            return serve
        return ["docker", "run", "--rm", "-ti", "--gpus", "all", "-v", f"{self.model_dir}:/{STEP2_FOLDER}",
                "-p", f"{self.port}:{self.port}", STEP2_IMAGE, "--", *serve]

    def command(self) -> str:
        return " ".join(shlex.quote(part) for part in self.argv())

    def lines(self, sizes: Step2Sizes, usable_bytes: float) -> Iterator[str]:
        per_gpu = sizes.bf16_bytes / self.tensor_parallel
        kv = sizes.kv_bytes_per_token / min(self.tensor_parallel, 4) * self.max_model_len
        yield (f"# {STEP2_FOLDER} ({sizes.params / 1e9:.2f} B parameters: LM {sizes.lm_params / 1e9:.2f} B + audio "
               f"encoder/adaptor {sizes.audio_params / 1e9:.2f} B) in bf16: {sizes.bf16_bytes / 1e9:.1f} GB of weights")
        yield (f"# {self.tensor_parallel} x {self.gpu.name}: per GPU {per_gpu / GIB:.1f} GiB weights + {kv / GIB:.2f} "
               f"GiB KV for one {self.max_model_len}-token sequence <= {usable_bytes / GIB:.1f} GiB usable")
        if self.omni:
            yield ("# vLLM-Omni (pip install vllm-omni): thinker + token2wav stages; it returns rendered speech, so "
                   "the step2 engine's client reads only its text [inferred from vLLM-Omni's examples, not run here]")
        elif self.docker:
            yield (f"# the vendor's vLLM fork ({STEP2_FORK_URL}) in its image; flags as the Step-Audio2 README gives "
                   "them [verified in the README, not run here]; mount the release folder by its absolute path")
        else:
            yield f"# the vendor's vLLM fork installed from {STEP2_FORK_URL} [flags verified in the README]"
        yield self.command()


def step2_recipe(model_path: Path, *, gpu: str = "h100", tensor_parallel: int | None = None, port: int = 8000,
                 max_model_len: int | None = None, fmt: str | None = None, docker: bool = True,
                 omni: bool = False) -> tuple[Step2Recipe, Step2Sizes, float]:
    """The recipe with the fewest GPUs (1, 2 or 4: 28 heads and 4 KV heads) holding the bf16 release and one
    full-length sequence; the per-GPU memory vLLM may use (as `memory_plan` reckons it)."""
    if gpu not in GPUS:
        raise ServingPlanError(f"unknown GPU {gpu!r}; choose one of {', '.join(GPUS)}")
    if fmt not in (None, "bf16"):
        raise ServingPlanError(f"Step-Audio 2 mini is served in bf16 (the release); {fmt} has no published "
                               "checkpoint or recipe: the native step2 engine runs int8/int4 on CPU")
    model_dir = model_path if (model_path / "config.json").is_file() or model_path.name == STEP2_FOLDER \
        else model_path / STEP2_FOLDER
    sizes = step2_sizes()
    chosen = GPUS[gpu]
    usable = 0.9 * chosen.memory_bytes - 3.0 * GIB
    length = max_model_len or STEP2_MAX_MODEL_LEN
    allowed = (1, 2, 4)
    if tensor_parallel is not None and tensor_parallel not in allowed:
        raise ServingPlanError(f"tensor parallel {tensor_parallel} does not divide Step-Audio 2 mini's 28 heads and "
                               f"4 KV heads; use one of {list(allowed)}")

    def fits(t: int) -> bool:
        return sizes.bf16_bytes / t + sizes.kv_bytes_per_token / min(t, 4) * length <= usable

    size = tensor_parallel or next((t for t in allowed if fits(t)), None)
    if size is None:
        raise ServingPlanError(f"{STEP2_FOLDER} in bf16 does not fit 4 x {chosen.name}")
    recipe = Step2Recipe(model_dir.absolute() if docker else model_dir, chosen, size, port, length, docker, omni)
    return recipe, sizes, usable
