"""Small ONNX models built by the tests themselves (onnx.helper), and a manifest listing them.

The ``models_dir`` fixture is re-exported by ``conftest.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tps_inference.manifest import add_entry

ONNX_OPSET = 17
ONNX_IR_VERSION = 8
SEED = 7
IN_FEATURES, OUT_FEATURES = 3, 2


def dense_relu_weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    return (rng.normal(size=(IN_FEATURES, OUT_FEATURES)).astype(np.float32),
            rng.normal(size=(OUT_FEATURES,)).astype(np.float32))


def dense_relu_reference(x: np.ndarray) -> dict[str, np.ndarray]:
    """What the dense_relu model must compute, in numpy."""
    w, b = dense_relu_weights()
    return {"y": np.maximum(x @ w + b, 0.0), "x_squared": x * x}


def build_dense_relu(path: Path) -> Path:
    """x float32[batch, 3] -> y = relu(x @ W + b) float32[batch, 2], x_squared = x * x."""
    w, b = dense_relu_weights()
    graph = helper.make_graph(
        nodes=[
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["pre"]),
            helper.make_node("Relu", ["pre"], ["y"]),
            helper.make_node("Mul", ["x", "x"], ["x_squared"]),
        ],
        name="dense_relu",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", IN_FEATURES])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", OUT_FEATURES]),
                 helper.make_tensor_value_info("x_squared", TensorProto.FLOAT, ["batch", IN_FEATURES])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_two_inputs(path: Path) -> Path:
    """a float32[batch, 4] + b float32[batch, 4] (scaled by an int64 k[1]) -> out float32[batch, 4]."""
    graph = helper.make_graph(
        nodes=[helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
               helper.make_node("Mul", ["b", "kf"], ["bk"]),
               helper.make_node("Add", ["a", "bk"], ["out"])],
        name="two_inputs",
        inputs=[helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4]),
                helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 4]),
                helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
        outputs=[helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


MANIFEST_HEADER = "# test manifest\nversion: 1\nmodels:\n"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A models/ folder with two ONNX models listed in its manifest.yaml."""
    root = tmp_path / "models"
    (root / "toy").mkdir(parents=True)
    manifest = root / "manifest.yaml"
    manifest.write_text(MANIFEST_HEADER)
    dense = build_dense_relu(root / "toy" / "dense_relu.onnx")
    two = build_two_inputs(root / "toy" / "two_inputs.onnx")
    add_entry(manifest, "dense_relu", dense, made_by="tests/inference/conftest.py build_dense_relu",
              data=f"synthetic weights, seed {SEED}", metrics={})
    add_entry(manifest, "two_inputs", two, made_by="tests/inference/conftest.py build_two_inputs",
              data="none (no weights)", metrics={"exact": True}, notes="elementwise")
    return root


LIDAR_ROWS, LIDAR_COLS = 16, 2048


def organised_lidar_cloud(seed: int = SEED) -> np.ndarray:
    """A (16, 2048) organised cloud in a driver layout: x, y, z, intensity float32, ring uint16,
    6 bytes padding, time float64 (point_step 32), with some NaN returns (no echo)."""
    dtype = np.dtype({"names": ["x", "y", "z", "intensity", "ring", "time"],
                      "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f8"],
                      "offsets": [0, 4, 8, 12, 16, 24], "itemsize": 32})
    rng = np.random.default_rng(seed)
    cloud = np.zeros((LIDAR_ROWS, LIDAR_COLS), dtype=dtype)
    for name in ("x", "y", "z"):
        cloud[name] = rng.normal(scale=20.0, size=cloud.shape)
    cloud["intensity"] = rng.uniform(0, 255, cloud.shape)
    cloud["ring"] = np.arange(LIDAR_ROWS)[:, None]
    cloud["time"] = np.linspace(0.0, 0.1, LIDAR_COLS)[None, :]
    cloud["x"][rng.random(cloud.shape) < 0.05] = np.nan
    return cloud
