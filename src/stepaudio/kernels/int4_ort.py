"""4-bit grouped products on onnxruntime's `MatMulNBits` (com.microsoft), the fast CPU int4 path on AVX2.

torch's CPU int4 kernel (`_weight_int4pack_mm_for_cpu`) is compute-bound on AVX2-only CPUs: on the shared
2-core EPYC it streams a [8192, 3072] int4 weight at ~3.9 GB/s, under a fifth of copy bandwidth. MLAS's
MatMulNBits kernels with `accuracy_level=4` quantise the activations to int8 per block and use int8 dot
products: ~11-14 GB/s at one row (measured, same machine, loaded), and 2.7x torch's speed at 128 rows too.
Level 0 dequantises to fp32 instead: exact (the dequantised weights' product within float rounding), slower.

One session per layer holds the only copy of the weights (ORT prepacks them; the Python wrapper's copy of the
model bytes is dropped). Nothing reads them back cheaply: `nibbles` recovers them through the session itself
with identity rows, exact but O(in^2 * out), meant for small layers and rare device moves.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from stepaudio.errors import UnsupportedError

__all__ = ["ACCURACY_EXACT", "ACCURACY_INT8", "MatMulNBits", "OrtInt4Options", "missing"]

ACCURACY_EXACT = 0  # fp32 activations and dequantised fp32 weights
ACCURACY_INT8 = 4  # activations rounded to int8 per block (scale = block absmax / 127), int8 dot products
_RECOVER_ROWS = 1024  # identity rows per call when reading nibbles back


@dataclass(frozen=True)
class OrtInt4Options:
    """How a MatMulNBits session runs: `accuracy_level` (ACCURACY_INT8 or ACCURACY_EXACT) and its threads
    (0: torch's thread count when the session is built). Threads wait without spinning: the cores are shared
    with torch's own threads between products."""

    accuracy_level: int = ACCURACY_INT8
    threads: int = 0


@lru_cache(maxsize=1)
def missing() -> str | None:
    """Why MatMulNBits cannot run here (a sentence), or None where it can: onnx and onnxruntime import and a
    tiny session builds and multiplies correctly."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return (f"the onnxruntime int4 path needs onnx and onnxruntime ({exc}); install the `lite` extra "
                "(pip install 'stepaudio[lite]') for fast CPU int4")
    try:
        u = torch.arange(32 * 32, dtype=torch.int64).remainder(16).to(torch.uint8).reshape(32, 32)
        probe = MatMulNBits(u, torch.ones(32, 1), None, 32, OrtInt4Options(ACCURACY_EXACT, 1))
        got = probe(torch.ones(1, 32))
    except Exception as exc:  # an old onnxruntime without the contrib op, or a build without it
        return f"this onnxruntime cannot run MatMulNBits ({type(exc).__name__}: {exc})"
    expected = (u.to(torch.float32) - 8).sum(dim=1)[None]
    if not torch.equal(got, expected):
        return "this onnxruntime's MatMulNBits gave a wrong product on a probe; not using it"
    return None


class MatMulNBits:
    """A 4-bit weight [out, in] as one MatMulNBits session: weight = (u - zero) * scale per group of
    `group_size` along the input, zero 8 where `zeros` is None. Call with float32 [rows, in]."""

    def __init__(self, nibbles: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, group_size: int,
                 options: OrtInt4Options = OrtInt4Options()) -> None:
        out_features, in_features = nibbles.shape
        if in_features % group_size or group_size % 16:
            raise ValueError(f"in_features {in_features} must be a multiple of group_size {group_size}, "
                             "itself a multiple of 16")
        blocks = in_features // group_size
        if tuple(scales.shape) != (out_features, blocks):
            raise ValueError(f"scales have shape {tuple(scales.shape)}; expected {(out_features, blocks)}")
        self.out_features, self.in_features, self.group_size = out_features, in_features, group_size
        self.options = options
        # kept (small: 4 bytes a group) to read nibbles back
        self.scales = scales.detach().to(torch.float32).contiguous()
        self.zeros = None if zeros is None else zeros.detach().to(torch.uint8).contiguous()
        self.session = _session(_pack_b(nibbles), self.scales,
                                None if self.zeros is None else _pack_zeros(self.zeros), group_size, options)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x float32 [rows, in] (made contiguous) -> float32 [rows, out], on the CPU."""
        a = x.detach().to(torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"A": a})[0])

    @property
    def weight_bytes(self) -> int:
        """Bytes one call reads: half a byte a weight, a float32 scale a group, half a byte a zero point."""
        groups = self.scales.numel()
        return self.out_features * self.in_features // 2 + 4 * groups + (0 if self.zeros is None else groups // 2)

    def nibbles(self) -> torch.Tensor:
        """The stored u (uint8 [out, in], 0..15), read back exactly through the session: identity rows give
        (u - zero) * scale (exact integers times the scale at either accuracy level: a one-hot block rounds to
        int8 without error). Costs in x in x out multiply-adds."""
        zeros = torch.full_like(self.scales, 8.0) if self.zeros is None else self.zeros.to(torch.float32)
        scale = self.scales.repeat_interleave(self.group_size, dim=1).t()  # [in, out]
        zero = zeros.repeat_interleave(self.group_size, dim=1).t()
        out = torch.empty(self.out_features, self.in_features, dtype=torch.uint8)
        for start in range(0, self.in_features, _RECOVER_ROWS):
            rows = min(_RECOVER_ROWS, self.in_features - start)
            eye = torch.zeros(rows, self.in_features)
            eye[torch.arange(rows), start + torch.arange(rows)] = 1.0
            product = self(eye)  # [rows, out]
            span = slice(start, start + rows)
            safe = torch.where(scale[span] == 0, torch.ones_like(scale[span]), scale[span])
            u = torch.round(product / safe) + zero[span]
            out[:, span] = u.clamp(0, 15).to(torch.uint8).t()
        return out


def _pack_b(nibbles: torch.Tensor) -> np.ndarray:
    """uint8 [out, in] nibbles -> MatMulNBits' B: two k-neighbours a byte, the even one in the low nibble
    ([out, blocks, group_size / 2] flattened per row is the same bytes as [out, in / 2])."""
    u = nibbles.to(torch.uint8)
    return (u[:, 0::2] | (u[:, 1::2] << 4)).contiguous().numpy()


def _pack_zeros(zeros: torch.Tensor) -> np.ndarray:
    """uint8 [out, blocks] zero points -> [out, ceil(blocks / 2)] nibbles, the even block in the low nibble."""
    z = zeros.to(torch.uint8)
    if z.shape[1] % 2:
        z = torch.cat([z, torch.full((z.shape[0], 1), 8, dtype=torch.uint8)], dim=1)
    return (z[:, 0::2] | (z[:, 1::2] << 4)).contiguous().numpy()


def _session(b: np.ndarray, scales: torch.Tensor, zeros: np.ndarray | None, group_size: int,
             options: OrtInt4Options) -> Any:
    """An InferenceSession of one MatMulNBits node, weights as initializers (ORT prepacks them)."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise UnsupportedError(f"the onnxruntime int4 path needs onnx and onnxruntime ({exc}); "
                               "install the `lite` extra") from exc
    out_features, in_features = b.shape[0], b.shape[1] * 2
    blocks = in_features // group_size
    inputs = ["A", "B", "scales"] + ([] if zeros is None else ["zero_points"])
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain="com.microsoft", K=in_features, N=out_features,
                            bits=4, block_size=group_size, accuracy_level=options.accuracy_level)
    initializers = [numpy_helper.from_array(b.reshape(out_features, blocks, group_size // 2), "B"),
                    numpy_helper.from_array(scales.numpy().reshape(-1), "scales")]
    if zeros is not None:
        initializers.append(numpy_helper.from_array(zeros.reshape(-1), "zero_points"))
    graph = helper.make_graph(
        [node], "int4_linear", [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["rows", in_features])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["rows", out_features])], initializer=initializers)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    data = model.SerializeToString()
    del model, graph, initializers
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    # the wrapper keeps the serialized model "to re-create the session" (a second copy of every weight); the
    # CPU provider never needs it
    if getattr(session, "_model_bytes", None) is not None:
        session._model_bytes = None
    _trim = _malloc_trim()
    if _trim is not None:
        _trim(0)
    return session


@lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None. Building a session copies the weights three times (proto, serialized
    model, ORT's tensors) in blocks glibc keeps after they are freed; without a trim a model's sessions leave
    ~2x their size resident (measured: TTS-3B at 8 layers, 2.95 GB resident against 1.64 GB trimmed)."""
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
