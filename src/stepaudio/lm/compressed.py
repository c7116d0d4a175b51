"""Step1 folders in the compressed-tensors format (what llm-compressor writes and vLLM loads) on our CPU kernels.

Such a folder is a release folder whose config.json carries a `quantization_config` with
`"quant_method": "compressed-tensors"` and whose quantized linears store, instead of `weight`:
* `pack-quantized` (int4 W4A16, AWQ or GPTQ): `weight_packed` int32 [out, in*bits/32] (each value stored as
  `q + 2**(bits-1)`, value j of a row in word j // (32/bits) at bit (j % (32/bits)) * bits), `weight_scale`
  [out, in/group], `weight_shape` [2], and for asymmetric schemes `weight_zero_point` packed the same way
  along the output axis ([out*bits/32, in/group]); weight = (q - zero) * scale.
* `int-quantized` (int8 W8A8): `weight` int8 [out, in] and `weight_scale` [out, 1]; activations are
  quantized per token at run time.
* `float-quantized` (fp8 W8A8): `weight` float8_e4m3fn [out, in] and `weight_scale` [out, 1].
Linears the config ignores (lm_head) and every other tensor (embedding, norms) are plain.

int8 goes onto `kernels.packed.PackedInt8Linear` (FBGEMM) or `kernels.linear.Int8Linear`, int4 onto
`kernels.int4.Int4Linear`. fp8 is widened to the model dtype at load: this CPU path has no fast fp8 product
(`torch._scaled_mm` on CPU measured ~45x slower than a bf16 matmul at 8192 x 3072, batch 1), so an fp8
folder runs here with fp8's rounding but bf16's memory and speed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stepaudio.errors import CheckpointError
from stepaudio.kernels.linear import Int8Linear
from stepaudio.kernels.packed import PackedInt8Linear, fbgemm_available
from stepaudio.lm.checkpoint import checkpoint_files
from stepaudio.lm.safetensors_mmap import SafetensorsFile
from stepaudio.lm.step1.config import Step1Config
from stepaudio.lm.step1.loading import expected_shapes
from stepaudio.lm.step1.model import Step1ForCausalLM

QUANT_METHOD = "compressed-tensors"
FORMATS = ("pack-quantized", "int-quantized", "float-quantized")


@dataclass(frozen=True)
class QuantArgs:
    """One tensor's quantization (compressed-tensors `QuantizationArgs`, the fields we act on)."""

    num_bits: int
    type: str  # "int" | "float"
    symmetric: bool
    strategy: str  # "tensor" | "channel" | "group" | "token" | ...
    group_size: int | None = None
    dynamic: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantArgs:
        return cls(num_bits=int(data.get("num_bits", 8)), type=str(data.get("type", "int")),
                   symmetric=bool(data.get("symmetric", True)), strategy=str(data.get("strategy", "tensor")),
                   group_size=None if data.get("group_size") is None else int(data["group_size"]),
                   dynamic=bool(data.get("dynamic", False)))


@dataclass(frozen=True)
class QuantGroup:
    """A config group: which modules (`targets`) get which weight and input-activation quantization."""

    targets: tuple[str, ...]
    weights: QuantArgs
    input_activations: QuantArgs | None
    format: str

    def describe(self) -> str:
        w = self.weights
        kind = f"{w.type}{w.num_bits}" if w.type == "int" else f"fp{w.num_bits}"
        per = f"group {w.group_size}" if w.strategy == "group" else f"per {w.strategy}"
        sym = "symmetric" if w.symmetric else "asymmetric"
        act = self.input_activations
        acts = "16-bit activations" if act is None else (
            f"{'dynamic' if act.dynamic else 'static'} {act.type}{act.num_bits} activations per {act.strategy}")
        return f"{kind} weights ({per}, {sym}), {acts} [{self.format}]"


@dataclass(frozen=True)
class CompressedConfig:
    """A folder's `quantization_config` (compressed-tensors)."""

    groups: tuple[QuantGroup, ...]
    ignore: tuple[str, ...]
    format: str
    raw: Mapping[str, Any]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompressedConfig:
        method = data.get("quant_method")
        if method != QUANT_METHOD:
            raise CheckpointError(f"quantization_config has quant_method {method!r}; the native engine reads "
                                  f"{QUANT_METHOD!r} folders (made by `stepaudio quantize`)")
        status = data.get("quantization_status", "compressed")
        if status != "compressed":
            raise CheckpointError(f"quantization_status is {status!r}: only compressed folders are stored in their "
                                  "quantized form; re-save with save_compressed=True")
        if data.get("kv_cache_scheme"):
            raise CheckpointError("a quantized KV cache (kv_cache_scheme) is vLLM-only; the native engine keeps "
                                  "its cache in the model dtype")
        top_format = str(data.get("format", "dense"))
        groups = []
        for name, group in (data.get("config_groups") or {}).items():
            if not group.get("weights"):
                raise CheckpointError(f"config group {name!r} quantizes no weights (activation-only schemes are "
                                      "not supported natively)")
            act = group.get("input_activations")
            groups.append(QuantGroup(targets=tuple(group.get("targets") or ()),
                                     weights=QuantArgs.from_dict(group["weights"]),
                                     input_activations=QuantArgs.from_dict(act) if act else None,
                                     format=str(group.get("format") or top_format)))
        return cls(tuple(groups), tuple(data.get("ignore") or ()), top_format, dict(data))

    def group_of(self, name: str) -> QuantGroup | None:
        """The group quantizing the linear module `name`, None when it is ignored or targeted by none."""
        if any(_matches(pattern, name) for pattern in self.ignore):
            return None
        for group in self.groups:
            if any(target == "Linear" or _matches(target, name) for target in group.targets):
                return group
        return None

    def describe(self) -> str:
        parts = [group.describe() for group in self.groups]
        ignored = f"; not quantized: {', '.join(self.ignore)}" if self.ignore else ""
        return "; ".join(parts) + ignored


def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.match(pattern[3:], name) is not None
    return pattern == name


def read_quantization_config(directory: str | Path) -> CompressedConfig | None:
    """The compressed-tensors config of a model folder, or None for a plain (16/32-bit) folder."""
    path = Path(directory) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # Step1Config.from_json reports a missing or broken config.json with the fix
    qcfg = data.get("quantization_config") if isinstance(data, dict) else None
    return CompressedConfig.from_dict(qcfg) if isinstance(qcfg, dict) else None


def unpack_int32(packed: torch.Tensor, num_bits: int, columns: int) -> torch.Tensor:
    """Unsigned values [rows, columns] (int16) of rows of `num_bits`-bit values packed densely into int32 words."""
    if 32 % num_bits:
        raise CheckpointError(f"{num_bits}-bit packed weights are not supported natively (4 and 8 are)")
    per_word = 32 // num_bits
    shifts = torch.arange(per_word, dtype=torch.int32) * num_bits
    values = (packed.to(torch.int32)[..., None] >> shifts) & ((1 << num_bits) - 1)
    return values.reshape(packed.shape[0], -1)[:, :columns].to(torch.int16)


class _Reader:
    """Tensors of a folder by key, from whichever shard holds them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = checkpoint_files(directory)
        self._open: dict[Path, SafetensorsFile] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.files

    def get(self, key: str) -> torch.Tensor:
        if key not in self.files:
            raise CheckpointError(f"{self.directory}: checkpoint lacks {key!r} (a quantized linear's tensor)")
        path = self.files[key]
        if path not in self._open:
            self._open[path] = SafetensorsFile(path)
        return self._open[path].get(key)


def quantized_linear(
    reader: _Reader, name: str, group: QuantGroup, shape: tuple[int, int], device: torch.device | str,
    dtype: torch.dtype,
) -> tuple[nn.Module, list[str]]:
    """The CPU module for the quantized linear `name` of `shape` [out, in], and the keys it consumed."""
    w = group.weights
    out_features, in_features = shape
    if group.format == "pack-quantized":
        return _packed_linear(reader, name, w, group.input_activations, shape, device)
    if group.format == "int-quantized" and w.type == "int" and w.num_bits == 8:
        _require(w.symmetric and w.strategy == "channel", name, group, "int8 needs symmetric per-channel weights")
        qweight = reader.get(f"{name}.weight")
        scale = reader.get(f"{name}.weight_scale").to(torch.float32).reshape(-1)
        _check(name, "weight", tuple(qweight.shape), shape)
        _check(name, "weight_scale", tuple(scale.shape), (out_features,))
        keys = [f"{name}.weight", f"{name}.weight_scale"]
        act = group.input_activations
        if act is None:
            return Int8Linear(qweight.to(device), scale.to(device), "weight-only"), keys
        _require(act.dynamic and act.type == "int", name, group, "int8 activations must be dynamic (W8A8)")
        if torch.device(device).type == "cpu" and fbgemm_available():
            return PackedInt8Linear(qweight.contiguous(), scale), keys
        return Int8Linear(qweight.to(device), scale.to(device), "dynamic"), keys
    if group.format == "float-quantized" and w.type == "float" and w.num_bits == 8:
        _require(w.strategy in ("channel", "tensor"), name, group, "fp8 needs per-channel or per-tensor scales")
        act = group.input_activations
        _require(act is None or act.dynamic, name, group, "static fp8 activation scales are not supported")
        weight = reader.get(f"{name}.weight")
        scale = reader.get(f"{name}.weight_scale").to(torch.float32)
        _check(name, "weight", tuple(weight.shape), shape)
        scale = scale.reshape(-1, 1) if scale.numel() == out_features else scale.reshape(1, 1)
        layer = nn.Linear(in_features, out_features, bias=False, device="meta")
        widened = (weight.to(torch.float32) * scale).to(device=device, dtype=dtype)
        layer.weight = nn.Parameter(widened, requires_grad=False)
        return layer, [f"{name}.weight", f"{name}.weight_scale"]
    raise CheckpointError(f"{name}: {group.describe()} is not supported by the native engine (it runs int4 "
                          "pack-quantized, int8 W8A8 and fp8 folders); serve this folder with vLLM")


def _packed_linear(
    reader: _Reader, name: str, w: QuantArgs, act: QuantArgs | None, shape: tuple[int, int],
    device: torch.device | str,
) -> tuple[nn.Module, list[str]]:
    out_features, in_features = shape
    group = QuantGroup((), w, act, "pack-quantized")
    _require(w.type == "int" and act is None, name, group, "pack-quantized runs as weight-only int")
    keys = [f"{name}.weight_packed", f"{name}.weight_scale", f"{name}.weight_shape"]
    stored = tuple(int(v) for v in reader.get(f"{name}.weight_shape").tolist())
    _check(name, "weight_shape", stored, shape)
    if f"{name}.weight_g_idx" in reader:
        _check_g_idx(reader.get(f"{name}.weight_g_idx"), name, w, in_features)
        keys.append(f"{name}.weight_g_idx")
    values = unpack_int32(reader.get(f"{name}.weight_packed"), w.num_bits, in_features)
    _check(name, "weight_packed", (values.shape[0], in_features), shape)
    scale = reader.get(f"{name}.weight_scale").to(torch.float32)
    offset = 1 << (w.num_bits - 1)
    zeros = None
    if not w.symmetric:
        keys.append(f"{name}.weight_zero_point")
        packed_zero = reader.get(f"{name}.weight_zero_point")
        zeros = unpack_int32(packed_zero.t().contiguous(), w.num_bits, out_features).t().contiguous()
        _check(name, "weight_zero_point", tuple(zeros.shape), tuple(scale.shape))
    if w.num_bits == 8:
        _require(w.symmetric and w.strategy == "channel", name, group, "8-bit packed weights must be symmetric "
                 "per channel")
        qweight = (values - offset).to(torch.int8)
        return Int8Linear(qweight.to(device), scale.reshape(-1).to(device), "weight-only"), keys
    _require(w.num_bits == 4, name, group, "packed weights must be 4 or 8 bits")
    if w.strategy == "channel":
        group_size = in_features
    else:
        _require(w.strategy == "group" and w.group_size is not None, name, group, "int4 needs group or channel "
                 "scales")
        assert w.group_size is not None
        group_size = w.group_size
    _check(name, "weight_scale", tuple(scale.shape), (out_features, in_features // group_size))
    from stepaudio.kernels.int4 import Int4Linear, check_shape

    try:
        check_shape(shape, group_size)
    except ValueError as exc:
        raise CheckpointError(f"{name}: the CPU int4 kernel cannot take this layer ({exc}); serve this folder "
                              "with vLLM or re-quantize with a group size the kernel takes") from exc
    if zeros is None:  # symmetric: the stored value is q + 8, q in -8..7
        layer = Int4Linear.from_groups((values - offset).to(device, torch.int8), scale.to(device), None, group_size)
    else:  # asymmetric: stored q + 8 and zero + 8, so their difference is q - zero; both lie in 0..15
        layer = Int4Linear.from_groups(values.to(device, torch.int8), scale.to(device),
                                       zeros.to(device, torch.int8), group_size)
    return layer, keys  # built on the device: a CPU int4 layer may hold its weights in onnxruntime only


def _check_g_idx(g_idx: torch.Tensor, name: str, w: QuantArgs, in_features: int) -> None:
    """Activation-ordered groups (GPTQ actorder=group) permute which group a column uses; only the trivial
    order maps onto contiguous groups."""
    size = w.group_size or in_features
    if not torch.equal(g_idx.to(torch.long), torch.arange(in_features) // size):
        raise CheckpointError(f"{name}: activation-ordered groups (weight_g_idx) are not supported natively; "
                              "quantize with actorder static or none")


def _require(ok: bool, name: str, group: QuantGroup, why: str) -> None:
    if not ok:
        raise CheckpointError(f"{name}: {group.describe()} is not supported by the native engine ({why}); "
                              "serve this folder with vLLM")


def _check(name: str, what: str, got: tuple[int, ...], want: tuple[int, ...]) -> None:
    if got != want:
        raise CheckpointError(f"{name}.{what}: checkpoint shape {list(got)} does not match {list(want)} expected "
                              "from config.json")


def load_compressed_step1(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    strict: bool = True,
) -> Step1ForCausalLM:
    """Load a compressed-tensors Step1 folder: quantized linears on the int8/int4 kernels, the rest plain.

    `dtype` (default: the checkpoint's own, bf16 for the releases) is that of the plain tensors and of the
    activations; quantized weights keep their own format.
    """
    directory = Path(path)
    qcfg = read_quantization_config(directory)
    if qcfg is None:
        raise CheckpointError(f"{directory}/config.json has no quantization_config: load it with load_step1")
    cfg = Step1Config.from_json(directory)
    reader = _Reader(directory)
    expected = expected_shapes(cfg)
    model = Step1ForCausalLM(cfg, device="meta", dtype=dtype or torch.float32)
    plain_dtype = dtype or reader.get("model.embed_tokens.weight").dtype
    used: set[str] = set()
    for key, shape in expected.items():
        module_name, _, param = key.rpartition(".")
        group = qcfg.group_of(module_name) if key.endswith("_proj.weight") or key == "lm_head.weight" else None
        parent_name, _, child = module_name.rpartition(".")
        if group is not None:
            layer, keys = quantized_linear(reader, module_name, group, (shape[0], shape[1]), device, plain_dtype)
            setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
            used.update(keys)
            continue
        tensor = reader.get(key)
        if tuple(tensor.shape) != shape:
            raise CheckpointError(f"{key}: checkpoint shape {list(tensor.shape)} does not match {list(shape)} "
                                  "expected from config.json")
        if not tensor.is_floating_point():
            raise CheckpointError(f"{key}: expected a floating point tensor, found {tensor.dtype}")
        module = model.get_submodule(module_name)
        module._parameters[param] = nn.Parameter(tensor.to(device=device, dtype=plain_dtype), requires_grad=False)
        used.add(key)
    unexpected = sorted(set(reader.files) - used)
    if unexpected and strict:
        raise CheckpointError(f"{directory}: unexpected key(s) for this config.json, first {unexpected[0]!r}")
    model.alibi_slopes = model.alibi_slopes.to(device)
    return model.eval()
