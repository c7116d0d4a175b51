from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stepaudio.errors import UnsupportedError
from stepaudio.kernels import snake_ort

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return snake_ort.build(tmp_path_factory.mktemp("snake"))
    except UnsupportedError as exc:
        pytest.skip(str(exc))


def _session(channels: int, fused: bool, library: Path, a: np.ndarray, r: np.ndarray) -> object:
    """y = x + r * sin(a * x)^2 over x [1, channels, t]: onnxruntime's ops, or the one custom op."""
    from onnx import TensorProto, helper, numpy_helper

    if fused:
        nodes = [helper.make_node("Snake", ["x", "a", "r"], ["y"], domain=snake_ort.DOMAIN)]
    else:
        nodes = [helper.make_node("Mul", ["a", "x"], ["ax"]), helper.make_node("Sin", ["ax"], ["s"]),
                 helper.make_node("Mul", ["s", "s"], ["q"]), helper.make_node("Mul", ["r", "q"], ["rq"]),
                 helper.make_node("Add", ["x", "rq"], ["y"])]
    graph = helper.make_graph(nodes, "snake",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, "t"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, "a"), numpy_helper.from_array(r, "r")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(snake_ort.DOMAIN, 1)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    if fused:
        options.register_custom_ops_library(str(library))
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("frames", [4000, 37, 8, 1, 0])
def test_the_op_equals_onnxruntimes_chain_to_float_rounding(library: Path, frames: int) -> None:
    """Within 2 units in the last place of the output plus 3e-7 * r (sin^2 off by < 3e-7): Sin and the
    polynomial sine differ by rounding only, at every length (vector body and scalar tail), with |a x| up to
    ~100."""
    rng = np.random.default_rng(frames)
    channels = 96  # 96 * 4000 elements: split over threads
    a = (rng.random((1, channels, 1)) * 3 + 0.05).astype(np.float32)
    r = (1 / a).astype(np.float32)
    x = (rng.standard_normal((1, channels, frames)) * 8).astype(np.float32)
    expected = _session(channels, False, library, a, r).run(None, {"x": x})[0]  # type: ignore[attr-defined]
    got = _session(channels, True, library, a, r).run(None, {"x": x})[0]  # type: ignore[attr-defined]
    assert got.shape == expected.shape and got.dtype == np.float32
    bound = 2 * np.spacing(np.abs(expected)) + 3e-7 * r
    assert np.all(np.abs(got - expected) <= bound)
    if frames > 8:
        assert np.any(got != x)  # the activation did something


def test_a_cpu_without_avx2_is_refused_with_a_reason() -> None:
    assert snake_ort.cpu_lacks({"sse2", "fma"}) == "the Snake op needs avx2, which this CPU lacks"
    assert snake_ort.cpu_lacks({"avx2", "fma", "sse2"}) is None


def test_the_library_is_cached_by_source_and_compiler(library: Path) -> None:
    stamp = library.stat().st_mtime_ns
    assert snake_ort.build(library.parent.parent) == library and library.stat().st_mtime_ns == stamp
    assert not [p for p in library.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_thread_count_does_not_change_the_result(library: Path) -> None:
    """Each channel is computed whole by one thread: 1 and 3 threads give the same floats."""
    rng = np.random.default_rng(4)
    a = (rng.random((1, 50, 1)) + 0.1).astype(np.float32)
    x = rng.standard_normal((1, 50, 3001)).astype(np.float32)
    outputs = []
    for threads in (1, 3):
        snake_ort.set_threads(library, threads)
        outputs.append(_session(50, True, library, a, 1 / a).run(None, {"x": x})[0])  # type: ignore[attr-defined]
    snake_ort.set_threads(library, 0)
    np.testing.assert_array_equal(outputs[0], outputs[1])
