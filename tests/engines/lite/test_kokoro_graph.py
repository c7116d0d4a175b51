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
