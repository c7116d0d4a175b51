"""Kokoro's int8 ONNX graph with its convolutions run as matrix products, prepared once and cached by sha256.

Two thirds of Kokoro's CPU time goes to its 87 `ConvInteger` nodes (1-D convolutions over up to 21,000 frames).
onnxruntime runs ConvInteger with unsigned weights only, through a u8 x u8 product; a `MatMulInteger` with
signed int8 weights uses the faster u8 x s8 kernels and keeps its packed weights between runs. The prepared
graph therefore computes each convolution's int32 output as im2col (the quantized input transposed to
[frames, channels], padded with its zero point, and its rows gathered once per output frame and tap) times the
weights minus their zero point: the same integers, so the audio is bit-for-bit the original's, at ~12 % less
CPU per audio second (measured on an AVX2 EPYC, `stepaudio bench lite`); gathering the im2col rows in one op
instead of a Slice per tap and a Concat takes ~3 % more off (same samples; A/B on Mandarin and Japanese).

The u8 x s8 kernel of an AVX2 CPU (no VNNI) adds products in pairs into int16, which could saturate: a
convolution is rewritten only where no pair of adjacent weights can overflow (|w1| + |w2| <= 128 against
inputs <= 255); in Kokoro v1.0 that leaves out two 3-tap single-channel convolutions.

Two more edits keep every float: each convolution's int32 -> float Cast and scalar-scale Mul become one
DequantizeLinear (float(x) * scale in one pass; the Cast ran on one thread), and the Snake activations'
Pow(sin, 2) becomes Mul(sin, sin); together ~3 % less CPU (interleaved A/B, all 16 bench sentences identical).
What is left off the matmuls is mostly order-sensitive: moving the Transposes out of the AdaIN chains would
make its ReduceMeans sum in another order (not the same floats).

One edit changes floats, and only where the caller asks (`snake=True`, with the library built by
`stepaudio.kernels.snake_ort` registered in the session): each Snake activation's Mul, Sin, Mul, Mul, Add
chain becomes one "stepaudio.Snake" node. onnxruntime's Sin is a scalar loop on one thread (~11 % of the
kernel time, the other thread idle); the op's polynomial sine runs vectorised on the session's threads
(~9 % less wall and CPU per audio second at 2 threads, interleaved A/B). It differs from Sin by float
rounding, but the int8 requantisation after each activation turns that into another draw of the model's
quantisation noise: samples move by up to ~15 % of the peak (19-26 dB under the signal), as they do when
onnxruntime's own ops merely multiply r * s * s in another order; the length and what Whisper hears stay
the same (test_kokoro).

Editing needs the `onnx` package; the prepared file is written beside a temporary name and renamed, so a
killed process never leaves a half-written model under the cached name.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio.engines.lite.resolver import sha256_file
from stepaudio.errors import MissingExtraError

# bump when the edit changes: the cached file's name carries it
EDIT_VERSION = "convmm3"
SNAKE_VERSION = "snake1"  # the fused Snake activations, added to the name of graphs that have them
FOLDER = "kokoro-prepared"
MAX_PAIR = 32767 // 255  # |w1| + |w2| of two weights summed into one int16 against uint8 inputs


def prepared_path(model: Path, cache_dir: Path, snake: bool = False) -> Path:
    """Where the prepared copy of `model` lives: named by its sha256 and the edits' versions."""
    edits = f"{EDIT_VERSION}-{SNAKE_VERSION}" if snake else EDIT_VERSION
    return cache_dir / FOLDER / f"{model.stem}.{sha256_file(model)[:16]}.{edits}.onnx"


def prepare(model: Path, cache_dir: Path, snake: bool = False) -> Path:
    """The path of `model` with its convolutions as matrix products, built on first use and reused after;
    `snake`: with the Snake activations as "stepaudio.Snake" nodes (a session must register the op's library)."""
    target = prepared_path(model, cache_dir, snake)
    if target.is_file():
        return target
    try:
        import onnx
    except ImportError as exc:
        raise MissingExtraError("lite", "onnx") from exc
    graph_model = onnx.load(str(model))
    convs_as_matmuls(graph_model)
    casts_as_dequantize(graph_model)
    squares_as_products(graph_model)
    if snake:
        snakes_fused(graph_model)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        onnx.save(graph_model, temporary)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the rest of the cache is readable
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


@dataclass(frozen=True)
class _Rewrite:
    nodes: list[Any]
    initializers: list[Any]


def convs_as_matmuls(model: Any) -> int:
    """Replace each eligible 1-D `ConvInteger` of a batch-1 graph (in place); returns how many were replaced."""
    from onnx import NodeProto

    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes: list[Any] = []
    added: list[Any] = []
    count = 0
    for index, node in enumerate(graph.node):
        rewrite = _rewrite(node, weights, f"convmm{index}") if node.op_type == "ConvInteger" else None
        if rewrite is None:
            copy = NodeProto()
            copy.CopyFrom(node)
            nodes.append(copy)
            continue
        nodes += rewrite.nodes
        added += rewrite.initializers
        count += 1
    used = {name for node in nodes for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend([*kept, *added])
    return count


def _rewrite(node: Any, weights: dict[str, Any], prefix: str) -> _Rewrite | None:
    """im2col + MatMulInteger nodes giving `node`'s int32 output, or None where the conv does not qualify."""
    from onnx import helper, numpy_helper

    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    inputs = list(node.input) + [""] * (4 - len(node.input))
    x, w_name, x_zero, w_zero = inputs
    if (w_name not in weights or attributes.get("group", 1) != 1 or attributes.get("auto_pad", b"NOTSET")
            not in (b"NOTSET", "NOTSET") or any(s != 1 for s in attributes.get("strides", [1]))):
        return None
    w = numpy_helper.to_array(weights[w_name])
    if w.dtype != np.uint8 or w.ndim != 3:
        return None
    if w_zero and w_zero not in weights:
        return None
    zero = numpy_helper.to_array(weights[w_zero]) if w_zero else np.uint8(0)
    if np.ndim(zero) != 0:
        return None
    out_channels, in_channels, taps = w.shape
    # rows of the matrix: tap-major, [tap * in_channels + channel], so im2col is one concat of shifted inputs
    matrix = (w.astype(np.int16) - int(zero)).transpose(2, 1, 0).reshape(taps * in_channels, out_channels)
    if _worst_pair(matrix) > MAX_PAIR:
        return None
    dilation = attributes.get("dilations", [1])[0]
    left, right = attributes.get("pads", [0, 0])
    span = dilation * (taps - 1)  # the padded input is this much longer than the output

    def const(name: str, values: list[int]) -> Any:
        return numpy_helper.from_array(np.array(values, dtype=np.int64), f"{prefix}_{name}")

    inits = [numpy_helper.from_array(matrix.astype(np.int8), f"{prefix}_w"),
             numpy_helper.from_array(np.array(0, dtype=np.int8), f"{prefix}_wz"), const("axis0", [0])]
    nodes = [helper.make_node("Squeeze", [x, f"{prefix}_axis0"], [f"{prefix}_x"]),
             helper.make_node("Transpose", [f"{prefix}_x"], [f"{prefix}_xt"], perm=[1, 0])]
    columns = f"{prefix}_xt"
    if left or right:
        inits.append(const("pads", [left, 0, right, 0]))
        nodes.append(helper.make_node("Pad", [columns, f"{prefix}_pads", x_zero] if x_zero else
                                      [columns, f"{prefix}_pads"], [f"{prefix}_xp"]))
        columns = f"{prefix}_xp"
    if taps > 1:
        # one Gather of rows [t + tap*dilation for tap] per output frame t, then [frames, taps * channels]: a
        # single copy of the input per tap (a Slice per tap and their Concat copied it twice)
        inits += [numpy_helper.from_array(np.array(0, dtype=np.int64), f"{prefix}_zero"),
                  numpy_helper.from_array(np.array(1, dtype=np.int64), f"{prefix}_one"),
                  numpy_helper.from_array(np.array(span, dtype=np.int64), f"{prefix}_span"),
                  numpy_helper.from_array(np.arange(taps, dtype=np.int64)[None, :] * dilation, f"{prefix}_offsets"),
                  const("axis1", [1]), const("shape", [0, -1])]
        nodes += [helper.make_node("Shape", [columns], [f"{prefix}_dims"]),
                  helper.make_node("Gather", [f"{prefix}_dims", f"{prefix}_zero"], [f"{prefix}_rows"], axis=0),
                  helper.make_node("Sub", [f"{prefix}_rows", f"{prefix}_span"], [f"{prefix}_frames"]),
                  helper.make_node("Range", [f"{prefix}_zero", f"{prefix}_frames", f"{prefix}_one"],
                                   [f"{prefix}_frame"]),
                  helper.make_node("Unsqueeze", [f"{prefix}_frame", f"{prefix}_axis1"], [f"{prefix}_frame1"]),
                  helper.make_node("Add", [f"{prefix}_frame1", f"{prefix}_offsets"], [f"{prefix}_index"]),
                  helper.make_node("Gather", [columns, f"{prefix}_index"], [f"{prefix}_taps"], axis=0),
                  helper.make_node("Reshape", [f"{prefix}_taps", f"{prefix}_shape"], [f"{prefix}_col"])]
        columns = f"{prefix}_col"
    nodes += [helper.make_node("MatMulInteger", [columns, f"{prefix}_w", x_zero, f"{prefix}_wz"], [f"{prefix}_y"]),
              helper.make_node("Transpose", [f"{prefix}_y"], [f"{prefix}_yt"], perm=[1, 0]),
              helper.make_node("Unsqueeze", [f"{prefix}_yt", f"{prefix}_axis0"], [node.output[0]],
                               name=f"{node.name}_as_matmul")]
    return _Rewrite(nodes, inits)


def _worst_pair(matrix: np.ndarray) -> int:
    """The largest |w1| + |w2| over the row pairs (0, 1), (2, 3), ... the int16 pair sums add per column."""
    magnitude = np.abs(matrix.astype(np.int32))
    if len(magnitude) % 2:
        magnitude = np.vstack([magnitude, np.zeros((1, magnitude.shape[1]), dtype=np.int32)])
    return int((magnitude[0::2] + magnitude[1::2]).max()) if magnitude.size else 0



def casts_as_dequantize(model: Any) -> int:
    """Fuse each int32 -> float `Cast` followed by a `Mul` with a scalar scale (the end of every quantized
    convolution) into one `DequantizeLinear` (in place); returns how many. DequantizeLinear computes
    float(x) * scale, the same float as the two ops, in one pass over the tensor instead of two (the Cast
    runs on one thread). Casts of MatMulInteger outputs are left to onnxruntime's own MatMulIntegerToFloat
    fusion."""
    from onnx import helper

    graph = model.graph
    producer = {name: node for node in graph.node for name in node.output}
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    outputs = {value.name for value in graph.output}
    scalars = {init.name for init in graph.initializer if len(init.dims) == 0}
    integers: set[str] = set()  # int32 tensors: integer convolution outputs and what keeps their type
    for node in graph.node:  # topological order: a node's inputs are classified before it
        if node.op_type in ("ConvInteger", "MatMulInteger") or (
                node.op_type in ("Add", "Sub", "Unsqueeze", "Squeeze", "Reshape", "Transpose")
                and node.input and node.input[0] in integers):
            integers.add(node.output[0])
        elif node.op_type == "DynamicQuantizeLinear":
            scalars.update(node.output[1:])
        elif node.op_type in ("Mul", "Div") and node.input and all(name in scalars for name in node.input):
            scalars.add(node.output[0])
    fused: dict[int, Any] = {}  # index of the Mul -> its DequantizeLinear
    dropped: set[int] = set()  # indices of the fused Casts
    for index, node in enumerate(graph.node):
        if node.op_type != "Cast" or node.input[0] not in integers:
            continue
        source = producer.get(node.input[0])
        to = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "to"), None)
        users = consumers.get(node.output[0], [])
        if source is None or source.op_type == "MatMulInteger" or to != 1 or node.output[0] in outputs:
            continue
        if len(users) != 1 or graph.node[users[0]].op_type != "Mul" or len(graph.node[users[0]].input) != 2:
            continue
        mul = graph.node[users[0]]
        scale = mul.input[1] if mul.input[0] == node.output[0] else mul.input[0]
        if scale not in scalars or scale == node.output[0]:
            continue
        fused[users[0]] = helper.make_node("DequantizeLinear", [node.input[0], scale], list(mul.output),
                                          name=f"{mul.name or node.name}_dequantize")
        dropped.add(index)
    nodes = [fused.get(index, node) for index, node in enumerate(graph.node) if index not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(fused)


def squares_as_products(model: Any) -> int:
    """Replace `Pow(x, 2)` (the Snake activations' sin(ax)^2) with `Mul(x, x)` (in place): the same floats,
    one multiply instead of a call through Pow's exponent dispatch; returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    twos = {init.name for init in graph.initializer
            if init.data_type == 1 and len(init.dims) == 0 and float(numpy_helper.to_array(init)) == 2.0}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            value = numpy_helper.to_array(node.attribute[0].t)
            if value.dtype == np.float32 and value.shape == () and float(value) == 2.0:
                twos.add(node.output[0])
    count = 0
    for index, node in enumerate(graph.node):
        if node.op_type == "Pow" and len(node.input) == 2 and node.input[1] in twos:
            graph.node[index].CopyFrom(helper.make_node("Mul", [node.input[0], node.input[0]], list(node.output),
                                                        name=node.name))
            count += 1
    return count


def snakes_fused(model: Any) -> int:
    """Replace each Snake activation y = x + r * sin(a * x)^2 (Mul(a, x), Sin, Mul(s, s) or Pow(s, 2), Mul(r, .),
    Add(x, .)) whose a and r are float initializers of one [1, C, 1] shape, and whose intermediates feed nothing
    else, with one `stepaudio.Snake(x, a, r)` node (in place); returns how many."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = {name: index for index, node in enumerate(graph.node) for name in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for value in graph.output:
        uses[value.name] = uses.get(value.name, 0) + 1
    twos = {name for name, init in inits.items()
            if init.data_type == 1 and len(init.dims) == 0 and float(numpy_helper.to_array(init)) == 2.0}

    def channel_vector(name: str) -> tuple[int, ...] | None:
        init = inits.get(name)
        if init is None or init.data_type != 1 or len(init.dims) != 3 or init.dims[0] != 1 or init.dims[2] != 1:
            return None
        return tuple(init.dims)

    def single(name: str, op: str) -> int | None:
        index = producer.get(name)
        return index if index is not None and graph.node[index].op_type == op and uses.get(name) == 1 else None

    fused: dict[int, Any] = {}  # index of the Add -> its Snake node
    dropped: set[int] = set()
    for position, add in enumerate(graph.node):
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        for x, product in (add.input, add.input[::-1]):
            scaled = single(product, "Mul")
            if scaled is None or len(graph.node[scaled].input) != 2:
                continue
            r = next((name for name in graph.node[scaled].input if channel_vector(name)), None)
            other = next((name for name in graph.node[scaled].input if name != r), "")
            square = single(other, "Mul") if single(other, "Mul") is not None else single(other, "Pow")
            if r is None or square is None:
                continue
            squared = graph.node[square]
            if squared.op_type == "Mul" and squared.input[0] != squared.input[1]:
                continue
            if squared.op_type == "Pow" and squared.input[1] not in twos:
                continue
            sine = producer.get(squared.input[0])
            if sine is None or graph.node[sine].op_type != "Sin" or \
                    uses.get(squared.input[0]) != (2 if squared.op_type == "Mul" else 1):
                continue
            argument = single(graph.node[sine].input[0], "Mul")
            if argument is None or x not in graph.node[argument].input or len(graph.node[argument].input) != 2:
                continue
            pair = graph.node[argument].input
            a = pair[1] if pair[0] == x else pair[0]
            if a == x or channel_vector(a) is None or channel_vector(a) != channel_vector(r):
                continue
            fused[position] = helper.make_node("Snake", [x, a, r], list(add.output), domain="stepaudio",
                                               name=f"{add.name or add.output[0]}_snake")
            dropped.update({scaled, square, sine, argument})
            break
    nodes = [fused.get(index, node) for index, node in enumerate(graph.node) if index not in dropped]
    if fused:
        del graph.node[:]
        graph.node.extend(nodes)
        if not any(entry.domain == "stepaudio" for entry in model.opset_import):
            model.opset_import.append(helper.make_opsetid("stepaudio", 1))
    return len(fused)
