"""`stepaudio quantize`: a Step1 folder -> a compressed-tensors folder that vLLM serves and the native engine runs.

llm-compressor (`oneshot`) does the work on the model wrapped by `train.calibration_model`, calibrated on
speech-token prompts: the TTS examples of a `stepaudio data generate` dataset (prompt + audio answer, exactly
what training sees) or a prompt file. Schemes (the recipes llm-compressor documents for each):

| scheme | recipe | stored as | vLLM | native CPU engine |
|---|---|---|---|---|
| int4-awq | AWQ smoothing, then int4 asymmetric group weights | pack-quantized | W4A16 (Marlin) | Int4Linear |
| int4-gptq | GPTQ, int4 symmetric group weights | pack-quantized | W4A16 (Marlin) | Int4Linear |
| int8 | GPTQ, int8 per-channel weights, dynamic per-token int8 activations | int-quantized | W8A8 int8 | FBGEMM int8 |
| fp8 | fp8 e4m3 per-channel weights, dynamic per-token activations (no data) | float-quantized | W8A8 fp8 | widened |

`lm_head` (and the embedding) stay in the model dtype, as the releases' vLLM recipes expect. The output is the
release folder again (tokenizer.model and every other file copied; config.json the release's plus
`quantization_config`), so the Step engine and `vllm serve` take it in place of the original.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch.utils.data import DataLoader

from stepaudio.data.manifest import INFO_FILE, DatasetError
from stepaudio.errors import CheckpointError, MissingExtraError, OptionError, StepAudioError
from stepaudio.lm.checkpoint import INDEX_NAME, checkpoint_files, save_weights
from stepaudio.lm.compressed import read_quantization_config
from stepaudio.lm.generate import GenerationConfig, generate
from stepaudio.lm.protocol import CausalLM
from stepaudio.lm.step1.loading import load_step1
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.text.vocab import STEP1

SCHEMES = ("int4-awq", "int4-gptq", "int8", "fp8")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class QuantizeConfig:
    scheme: str
    group_size: int = 128  # int4 only; the CPU int4 kernel takes 32-256, vLLM's Marlin 32, 64 or 128
    max_prompts: int = 256  # calibration prompts (a seeded sample when the source has more)
    max_length: int = 2048  # tokens per calibration prompt (longer ones keep their last max_length)
    dampening: float = 0.01  # GPTQ's Hessian dampening fraction
    dtype: str | None = None  # bf16 / fp16 / fp32 for calibration and the output's plain tensors; None: the folder's
    seed: int = 0
    max_shard_bytes: int = 5 << 30
    check_prompts: int = 4  # 0: no quality check after writing
    check_steps: int = 32

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise OptionError(f"unknown scheme {self.scheme!r}; choose one of {', '.join(SCHEMES)}")
        if self.group_size < 1 or self.max_prompts < 1 or self.max_length < 2:
            raise OptionError("group size, prompt count and prompt length must be positive")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise OptionError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")


@dataclass(frozen=True)
class QualityCheck:
    """The quantized folder, loaded natively, against the source in the same dtype, teacher-forced on the
    source's greedy continuations of a few prompts."""

    prompts: int
    steps: int
    max_abs_error: float  # largest |logit difference| over the continuation positions
    rel_rms_error: float  # rms(difference) / rms(reference logits)
    greedy_agreement: float  # fraction of steps whose quantized argmax is the reference's greedy token

    def format(self) -> str:
        return (f"native check ({self.prompts} prompts x {self.steps} greedy steps, vs the source): logit error "
                f"max {self.max_abs_error:.4f}, rms {100 * self.rel_rms_error:.2f} % of the logits' rms; greedy "
                f"tokens agree on {100 * self.greedy_agreement:.1f} % of steps")


@dataclass(frozen=True)
class QuantizeResult:
    out: Path
    scheme: str
    prompts: int
    tokens: int
    audio_tokens: int
    quantized_linears: int
    bytes_in: int
    bytes_out: int
    seconds: float
    check: QualityCheck | None

    def format(self) -> str:
        lines = [
            f"wrote {self.out} ({self.scheme}): {self.quantized_linears} linear layers quantized, weights "
            f"{self.bytes_in / 1e9:.3f} GB -> {self.bytes_out / 1e9:.3f} GB, in {self.seconds:.1f} s",
            f"calibrated on {self.prompts} prompt(s), {self.tokens} tokens ({self.audio_tokens} speech tokens)",
        ]
        if self.check is not None:
            lines.append(self.check.format())
        return "\n".join(lines)


def load_calibration_prompts(
    source: str | Path, tokenizer: StepTokenizer, *, vocab_size: int, max_length: int, limit: int, seed: int = 0
) -> list[list[int]]:
    """Token ids of the calibration prompts: a dataset folder's TTS examples (prompt + audio answer), or a
    prompt file (.jsonl of {"ids": [...]} or {"text": ...}; otherwise one text a line, `<audio_N>` pieces
    allowed). At most `limit` (a seeded sample), each cut to its last `max_length` tokens (a TTS example ends
    in its speech answer); at least one must hold speech tokens.
    """
    path = Path(source)
    if (path / INFO_FILE).is_file():
        from stepaudio.train.examples import load_examples

        examples = load_examples(path, tokenizer, vocab_size=vocab_size, max_length=1 << 30, eval_fraction=0.0)
        prompts = [[int(i) for i in example.input_ids] for example in examples.train]
    elif path.is_file():
        prompts = _prompt_file(path, tokenizer)
    else:
        raise DatasetError(f"calibration prompts not found: {path} is neither a dataset folder (with {INFO_FILE}) "
                           "nor a prompt file")
    for n, ids in enumerate(prompts):
        bad = [i for i in ids if not 0 <= i < vocab_size]
        if bad:
            raise DatasetError(f"{path}: prompt {n + 1} holds id {bad[0]}, outside the model's vocabulary "
                               f"0..{vocab_size - 1}")
    prompts = [ids[-max_length:] for ids in prompts if len(ids) >= 2]  # the tail: the speech answer
    if not prompts:
        raise DatasetError(f"{path}: no calibration prompts of two or more tokens")
    if len(prompts) > limit:
        prompts = random.Random(seed).sample(prompts, limit)
    if not any(STEP1.is_audio_piece_id(i) for ids in prompts for i in ids):
        raise DatasetError(f"{path}: no prompt holds a speech token (<audio_N>); calibrate on a `stepaudio data "
                           "generate` dataset or prompts with audio tokens")
    return prompts


def _prompt_file(path: Path, tokenizer: StepTokenizer) -> list[list[int]]:
    prompts: list[list[int]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix != ".jsonl":
            prompts.append(tokenizer.encode(line.strip()))
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{lineno}: not JSON ({exc.msg})") from exc
        if isinstance(value, dict) and isinstance(value.get("ids"), list):
            prompts.append([int(i) for i in value["ids"]])
        elif isinstance(value, dict) and isinstance(value.get("text"), str):
            prompts.append(tokenizer.encode(value["text"]))
        elif isinstance(value, str):
            prompts.append(tokenizer.encode(value))
        else:
            raise DatasetError(f"{path}:{lineno}: expected an object with 'ids' (a list) or 'text', or a string")
    return prompts


def recipe_for(config: QuantizeConfig) -> list[Any]:
    """The llm-compressor modifiers of a scheme (needs the `quantize` extra)."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform import AWQModifier

    ignore = ["lm_head"]

    def int4(symmetric: bool) -> dict[str, Any]:
        weights = {"num_bits": 4, "type": "int", "symmetric": symmetric, "strategy": "group",
                   "group_size": config.group_size}
        return {"group_0": {"targets": ["Linear"], "weights": weights}}

    if config.scheme == "int4-gptq":
        return [GPTQModifier(config_groups=int4(True), ignore=ignore, dampening_frac=config.dampening)]
    if config.scheme == "int4-awq":
        # the layer-name mappings default to the Llama ones, which are Step1's names too
        return [AWQModifier(duo_scaling=True), QuantizationModifier(config_groups=int4(False), ignore=ignore)]
    if config.scheme == "int8":
        return [GPTQModifier(scheme="W8A8", targets=["Linear"], ignore=ignore, dampening_frac=config.dampening)]
    return [QuantizationModifier(scheme="FP8_DYNAMIC", targets=["Linear"], ignore=ignore)]


def _require_extra() -> None:
    for module in ("llmcompressor", "compressed_tensors", "transformers"):
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingExtraError("quantize", module) from exc


@contextlib.contextmanager
def _cpu_only_workarounds() -> Iterator[None]:
    """AWQ pins its cached activations for faster host-to-device copies, which raises on a torch without an
    accelerator (llm-compressor 0.14); pinning is only a speed-up, so it is skipped there."""
    if torch.accelerator.is_available():
        yield
        return
    from compressed_tensors.utils import patch_attr
    from llmcompressor.pipelines.cache import IntermediatesCache

    with patch_attr(IntermediatesCache, "pin_memory", lambda self, *args, **kwargs: None):
        yield


def _check_int4_shapes(model: torch.nn.Module, config: QuantizeConfig) -> None:
    """int4 folders must load natively too: every quantized layer must suit the CPU int4 kernel (group sizes
    32-256 dividing in_features, out_features a multiple of 16), which vLLM's Marlin kernels also need."""
    if not config.scheme.startswith("int4"):
        return
    from stepaudio.kernels.int4 import check_shape

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not name.endswith("lm_head"):
            try:
                check_shape((module.out_features, module.in_features), config.group_size)
            except ValueError as exc:
                raise OptionError(f"{name}: int4 with group size {config.group_size} does not fit ({exc}); pass "
                                  "another --group-size") from exc


def quantize_step1(
    source: str | Path, out: str | Path, config: QuantizeConfig, prompts: Sequence[Sequence[int]]
) -> QuantizeResult:
    """Calibrate and write `out`; then (unless `config.check_prompts` is 0) load it natively and compare."""
    _require_extra()
    from compressed_tensors import ModelCompressor
    from llmcompressor import oneshot

    from stepaudio.train.calibration_model import TRACING_LEAVES, Step1ForCalibration, register_config

    src, dst = Path(source), Path(out)
    if dst.exists() and (dst.resolve() == src.resolve() or any(dst.iterdir())):
        raise StepAudioError(f"{dst} exists and is not empty: choose a new output folder")
    if not prompts:
        raise DatasetError("no calibration prompts")
    start = time.perf_counter()
    dtype = DTYPES[config.dtype] if config.dtype else None
    if read_quantization_config(src) is not None:
        raise CheckpointError(f"{src} is already quantized: quantize the bf16 release folder")
    model = load_step1(src, dtype=dtype)
    _check_int4_shapes(model, config)
    register_config()
    wrapper = Step1ForCalibration(model, src)
    batches = [{"input_ids": torch.tensor([list(p)]), "attention_mask": torch.ones(1, len(p), dtype=torch.long)}
               for p in prompts]
    loader: DataLoader[dict[str, torch.Tensor]] = DataLoader(batches, batch_size=None)  # type: ignore[arg-type]
    ignore_default = inspect.signature(oneshot).parameters["tracing_ignore"].default
    with _cpu_only_workarounds(), torch.no_grad():
        # processor: oneshot insists on one when given data, but only uses it to tokenize a text dataset; ours
        # (which made the prompts) stands in, as the prompts arrive already tokenized
        processor = cast(Any, StepTokenizer(src))
        oneshot(model=wrapper, dataset=loader, recipe=recipe_for(config), processor=processor,
                tracing_ignore=[*ignore_default, *TRACING_LEAVES], shuffle_calibration_samples=False)
        compressor = ModelCompressor.from_pretrained_model(wrapper)
        compressor.compress_model(wrapper)
    state = wrapper.state_dict()
    dtype_name = str(model.dtype).removeprefix("torch.")
    save_weights(state, dst, model.config.to_hf_dict() | {"torch_dtype": dtype_name},
                 max_shard_bytes=config.max_shard_bytes)
    compressor.update_config(str(dst))
    _copy_release_files(src, dst)
    seconds = time.perf_counter() - start
    del wrapper, model, state
    check = None
    if config.check_prompts > 0:
        check = compare_quantized(load_step1(src, dtype=dtype or torch.bfloat16),
                                  load_step1(dst, dtype=dtype or torch.bfloat16),
                                  prompts[: config.check_prompts], config.check_steps)
    return QuantizeResult(
        out=dst, scheme=config.scheme, prompts=len(prompts), tokens=sum(len(p) for p in prompts),
        audio_tokens=sum(1 for p in prompts for i in p if STEP1.is_audio_piece_id(i)),
        quantized_linears=sum(1 for key in checkpoint_files(dst) if key.endswith(".weight_scale")),
        bytes_in=_weight_bytes(src), bytes_out=_weight_bytes(dst), seconds=seconds, check=check,
    )


def _copy_release_files(src: Path, dst: Path) -> None:
    """Everything beside the weights (tokenizer.model, remote code, speakers/, decoder folders)."""
    for item in src.iterdir():
        if item.name in ("config.json", INDEX_NAME) or item.suffix == ".safetensors":
            continue
        target = dst / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)


def _weight_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.safetensors"))


def compare_quantized(
    reference: CausalLM, quantized: CausalLM, prompts: Sequence[Sequence[int]], steps: int
) -> QualityCheck:
    """Greedy-decode `steps` tokens per prompt with the reference, then run both models over prompt +
    continuation and compare their logits at the continuation's positions."""
    if not prompts or steps < 1:
        raise ValueError("compare needs prompts and at least one step")
    max_err, sq_err, sq_ref, agree, total = 0.0, 0.0, 0.0, 0, 0
    for prompt in prompts:
        cont = generate(reference, [list(prompt)], GenerationConfig(max_new_tokens=steps, stop_ids=()))[0]
        ids = torch.tensor([[*prompt, *cont]], device=reference.device)
        first = len(prompt) - 1  # the position that predicts the first continuation token
        with torch.no_grad():
            ref = reference.logits(reference.hidden(reference.embed(ids))[:, first:-1]).float()
            got = quantized.logits(quantized.hidden(quantized.embed(ids))[:, first:-1]).float()
        diff = got - ref
        max_err = max(max_err, diff.abs().max().item())
        sq_err += diff.pow(2).sum().item()
        sq_ref += ref.pow(2).sum().item()
        agree += int((got.argmax(-1) == ref.argmax(-1)).sum().item())
        total += ref.shape[1]
    return QualityCheck(prompts=len(prompts), steps=steps, max_abs_error=max_err,
                        rel_rms_error=(sq_err / max(sq_ref, 1e-30)) ** 0.5, greedy_agreement=agree / total)
