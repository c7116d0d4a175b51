from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stepaudio.engines.lite import kokoro_graph
from stepaudio.engines.lite.resolver import sha256_file

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


def _conv_model(path: Path, weights: np.ndarray, zero: int, pads: list[int], dilation: int) -> Path:
    """Kokoro's quantized convolution in miniature: float in -> DynamicQuantizeLinear -> ConvInteger -> int32 out,
    beside one grouped ConvInteger the rewrite must leave alone."""
    from onnx import TensorProto, helper, numpy_helper

    channels = weights.shape[1]
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("ConvInteger", ["xq", "w", "xz", "wz"], ["y"], pads=pads, dilations=[dilation],
                              kernel_shape=[weights.shape[2]]),
             helper.make_node("ConvInteger", ["xq", "wg", "xz"], ["g"], group=channels, kernel_shape=[1])]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, "t"])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, weights.shape[0], "u"]),
         helper.make_tensor_value_info("g", TensorProto.INT32, [1, channels, "t"])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array(zero, dtype=np.uint8), "wz"),
         numpy_helper.from_array(np.full((channels, 1, 1), 3, dtype=np.uint8), "wg")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(y) for y in session.run(None, {"x": x})]


def _ops(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize(("taps", "pads", "dilation"), [(11, [15, 15], 3), (3, [1, 1], 1), (1, [0, 0], 1),
                                                        (5, [0, 0], 1), (3, [2, 0], 1)])
def test_convolutions_become_matmuls_with_the_same_integers(tmp_path: Path, taps: int, pads: list[int],
                                                            dilation: int) -> None:
    rng = np.random.default_rng(taps)
    weights = rng.integers(0, 128, size=(12, 8, taps), dtype=np.uint8)  # 7-bit, as Kokoro's quantizer wrote
    model = _conv_model(tmp_path / "conv.onnx", weights, 64, pads, dilation)
    x = rng.standard_normal((1, 8, 40)).astype(np.float32)
    expected = _run(model, x)
    prepared = kokoro_graph.prepare(model, tmp_path / "cache")
    assert _ops(prepared).count("ConvInteger") == 1 and "MatMulInteger" in _ops(prepared)  # the grouped one stays
    got = _run(prepared, x)
    assert got[0].dtype == np.int32 and got[0].shape == expected[0].shape
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    onnx.checker.check_model(str(prepared))


def test_weights_whose_pairs_could_saturate_int16_keep_their_convolution(tmp_path: Path) -> None:
    """u8 x s8 on AVX2 adds products in pairs into int16: 255 * (|w1| + |w2|) must stay under 32768. Rows of the
    weight matrix go tap by tap, channel by channel: channels 0 and 1 of one tap form a pair."""
    assert kokoro_graph.MAX_PAIR == 128
    weights = np.full((4, 2, 3), 64, dtype=np.uint8)  # all zero after the zero point 64
    weights[0, 0, 0], weights[0, 1, 0] = 0, 0  # 64 + 64 = 128: 255 * 128 = 32640 fits
    weights[1, 0, 2], weights[1, 1, 2] = 127, 129  # 63 + 65 = 128 fits
    fits = _conv_model(tmp_path / "fits.onnx", weights, 64, [1, 1], 1)
    assert _ops(kokoro_graph.prepare(fits, tmp_path)).count("ConvInteger") == 1  # only the grouped one
    weights[2, 0, 1], weights[2, 1, 1] = 0, 129  # 64 + 65 = 129 could saturate
    risky = _conv_model(tmp_path / "risky.onnx", weights, 64, [1, 1], 1)
    assert _ops(kokoro_graph.prepare(risky, tmp_path)).count("ConvInteger") == 2


def test_the_prepared_graph_is_cached_under_the_models_sha256(tmp_path: Path) -> None:
    model = _conv_model(tmp_path / "conv.onnx", np.full((2, 2, 3), 60, dtype=np.uint8), 64, [1, 1], 1)
    prepared = kokoro_graph.prepare(model, tmp_path)
    assert prepared == kokoro_graph.prepared_path(model, tmp_path)
    assert sha256_file(model)[:16] in prepared.name and kokoro_graph.EDIT_VERSION in prepared.name
    stamp = prepared.stat().st_mtime_ns
    assert kokoro_graph.prepare(model, tmp_path) == prepared and prepared.stat().st_mtime_ns == stamp
    assert not [p for p in prepared.parent.iterdir() if p.name.endswith(".tmp")]
    model.write_bytes(model.read_bytes() + b"\n")
    assert kokoro_graph.prepared_path(model, tmp_path) != prepared


def _quantized_conv_model(path: Path, channel_scale: bool) -> Path:
    """The end of one of Kokoro's quantized convolutions: int32 output + int32 bias -> Cast -> Mul by the input's
    scale times the weights' (a scalar, or per channel), a Snake-like sin(x)^2, and a MatMulInteger output cast
    the same way (onnxruntime fuses that one itself)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weight_scale = (np.array([0.02, 0.03, 0.05], dtype=np.float32)[:, None] if channel_scale
                    else np.array(0.02, dtype=np.float32))
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("ConvInteger", ["xq", "w", "xz", "wz"], ["acc"], pads=[1, 1], kernel_shape=[3]),
             helper.make_node("Add", ["acc", "bias"], ["biased"]),
             helper.make_node("Mul", ["xs", "ws"], ["scale"]),
             helper.make_node("Cast", ["biased"], ["float"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["float", "scale"], ["y"]),
             helper.make_node("Sin", ["y"], ["sin"]),
             helper.make_node("Pow", ["sin", "two"], ["square"]),
             helper.make_node("Squeeze", ["xq", "axis0"], ["rows"]),
             helper.make_node("MatMulInteger", ["rows", "m", "xz"], ["macc"]),
             helper.make_node("Cast", ["macc"], ["mfloat"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["mfloat", "xs"], ["my"])]
    graph = helper.make_graph(
        nodes, "quantized", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 40])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
         for name, shape in (("y", [1, 3, 40]), ("square", [1, 3, 40]), ("my", [4, 5]))],
        [numpy_helper.from_array(rng.integers(0, 128, size=(3, 4, 3), dtype=np.uint8), "w"),
         numpy_helper.from_array(np.array(64, dtype=np.uint8), "wz"),
         numpy_helper.from_array(rng.integers(-3000, 3000, size=(1, 3, 1), dtype=np.int32), "bias"),
         numpy_helper.from_array(weight_scale, "ws"),
         numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
         numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
         numpy_helper.from_array(rng.integers(-60, 60, size=(40, 5), dtype=np.int8), "m")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_casts_and_squares_become_dequantize_and_products_with_the_same_floats(tmp_path: Path) -> None:
    model = _quantized_conv_model(tmp_path / "q.onnx", channel_scale=False)
    x = np.random.default_rng(3).standard_normal((1, 4, 40)).astype(np.float32) * 5
    expected = _run(model, x)
    edited = onnx.load(str(model))
    assert kokoro_graph.casts_as_dequantize(edited) == 1  # the MatMulInteger's cast stays for onnxruntime
    assert kokoro_graph.squares_as_products(edited) == 1
    ops = [node.op_type for node in edited.graph.node]
    assert ops.count("Cast") == 1 and ops.count("DequantizeLinear") == 1 and "Pow" not in ops
    onnx.checker.check_model(edited)
    onnx.save(edited, tmp_path / "edited.onnx")
    for got, want in zip(_run(tmp_path / "edited.onnx", x), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert np.abs(expected[0]).max() > 1e-3  # the comparison is not between two zero tensors


def test_a_per_channel_scale_keeps_its_cast(tmp_path: Path) -> None:
    """DequantizeLinear takes one scale per tensor (or per axis, with another layout): a [3, 1] scale stays a Mul."""
    edited = onnx.load(str(_quantized_conv_model(tmp_path / "q.onnx", channel_scale=True)))
    assert kokoro_graph.casts_as_dequantize(edited) == 0
    assert [node.op_type for node in edited.graph.node].count("Cast") == 2


def test_prepare_applies_every_edit(tmp_path: Path) -> None:
    prepared = kokoro_graph.prepare(_quantized_conv_model(tmp_path / "q.onnx", channel_scale=False), tmp_path)
    ops = _ops(prepared)
    assert "ConvInteger" not in ops and "Pow" not in ops and ops.count("DequantizeLinear") == 1


def _snake_model(path: Path, shared: bool = True) -> Path:
    """Two of Kokoro's Snake activations in a row, x + r * sin(a * x)^2 with Pow(s, 2) as released; with
    `shared=False` the second one's sine also leaves the graph, so it must stay as it is."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    a = (rng.random((1, 6, 1)) * 2 + 0.2).astype(np.float32)
    nodes, outputs = [], ["y2"] if shared else ["y2", "s2"]
    for step, x in ((1, "x"), (2, "y1")):
        nodes += [helper.make_node("Mul", [f"a{step}", x], [f"ax{step}"]),
                  helper.make_node("Sin", [f"ax{step}"], [f"s{step}"]),
                  helper.make_node("Pow", [f"s{step}", "two"], [f"q{step}"]),
                  helper.make_node("Mul", [f"r{step}", f"q{step}"], [f"rq{step}"]),
                  helper.make_node("Add", [x, f"rq{step}"], [f"y{step}"])]
    graph = helper.make_graph(
        nodes, "snake", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, "t"])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 6, "t"]) for name in outputs],
        [numpy_helper.from_array(a, "a1"), numpy_helper.from_array((1 / a).astype(np.float32), "r1"),
         numpy_helper.from_array(a * 2, "a2"), numpy_helper.from_array((0.5 / a).astype(np.float32), "r2"),
         numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _snake_library(tmp_path: Path) -> Path:
    from stepaudio.errors import UnsupportedError
    from stepaudio.kernels import snake_ort

    try:
        return snake_ort.build(tmp_path)
    except UnsupportedError as exc:
        pytest.skip(str(exc))


def test_snake_activations_become_one_op_equal_to_float_rounding(tmp_path: Path) -> None:
    """Not bit for bit (a polynomial sine): same shape, within 1e-6 of the peak here; on Kokoro the int8
    requantisation after each Snake turns such differences into another draw of its noise (test_kokoro)."""
    model = _snake_model(tmp_path / "snake.onnx")
    x = np.random.default_rng(9).standard_normal((1, 6, 333)).astype(np.float32) * 4
    expected = _run(model, x)[0]
    prepared = kokoro_graph.prepare(model, tmp_path, snake=True)
    assert prepared == kokoro_graph.prepared_path(model, tmp_path, snake=True) != kokoro_graph.prepare(model, tmp_path)
    assert kokoro_graph.SNAKE_VERSION in prepared.name
    assert _ops(prepared) == ["Snake", "Snake"]
    options = onnxruntime.SessionOptions()
    options.register_custom_ops_library(str(_snake_library(tmp_path)))
    session = onnxruntime.InferenceSession(str(prepared), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[0]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-6 * np.abs(expected).max()
    assert np.abs(got - x).max() > 0.1  # the activations changed the signal


def test_a_snake_whose_parts_are_used_elsewhere_is_left_alone(tmp_path: Path) -> None:
    edited = onnx.load(str(_snake_model(tmp_path / "snake.onnx", shared=False)))
    assert kokoro_graph.snakes_fused(edited) == 1  # the first one only: the second's sine is a graph output
    ops = [node.op_type for node in edited.graph.node]
    assert ops.count("Snake") == 1 and ops.count("Sin") == 1 and ops.count("Pow") == 1
    assert any(entry.domain == "stepaudio" for entry in edited.opset_import)


def test_a_snake_graph_without_its_library_fails_to_load(tmp_path: Path) -> None:
    """What kokoro._open_session's fallback catches: without the op's library the session refuses the graph."""
    prepared = kokoro_graph.prepare(_snake_model(tmp_path / "snake.onnx"), tmp_path, snake=True)
    with pytest.raises(Exception, match="Snake"):
        onnxruntime.InferenceSession(str(prepared), providers=["CPUExecutionProvider"])
