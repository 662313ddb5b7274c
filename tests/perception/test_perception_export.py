"""Export: ONNX parity vs torch, static INT8 QDQ runs and stays close, TensorRT path (GPU skip)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from perception_helpers import box_points, ground_points
from tps_perception.backends import ort_backend, torch_backend
from tps_perception.model import CenterNet, NetConfig
from tps_perception.pillars import BEV_CHANNELS, BevGridParams, points_to_bev

from export.detector import build_engine, export_onnx, head_errors, quantize_int8

TINY = NetConfig(stem=8, widths=(8, 16, 16), depths=(1, 1, 1), neck=8, head=8)
GRID = BevGridParams()
FP32_MAX_ABS = 1e-3        # ONNX FP32 vs torch, logits / regression
INT8_MEAN_PROB_ABS = 0.05  # INT8 vs torch, mean abs error of heatmap probabilities
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _bevs(n: int) -> list[np.ndarray]:
    out = []
    for k in range(n):
        pts = np.concatenate([ground_points(seed=k), box_points((5.0 + 3 * k, -2.0), (4.5, 1.9, 1.5), 0.2 * k, seed=k)])
        out.append(points_to_bev(pts, GRID))
    return out


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = CenterNet(TINY)
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial statistics
        for b in _bevs(4):
            model(torch.from_numpy(b[None]))
    return model.eval()


def test_onnx_matches_torch_and_int8_stays_close(tiny_model, tmp_path):
    onnx_path = export_onnx(tiny_model, tmp_path / "d.onnx", (1, len(BEV_CHANNELS), GRID.size, GRID.size))
    import onnx

    assert onnx.load(str(onnx_path)).opset_import[0].version >= 17
    bevs = _bevs(3)
    ref = [torch_backend(tiny_model, threads=1)(b) for b in bevs]
    fp32 = [ort_backend(onnx_path, threads=1)(b) for b in bevs]
    err = head_errors(ref, fp32)
    assert err["heatmap_logit_max_abs"] < FP32_MAX_ABS and err["regression_max_abs"] < FP32_MAX_ABS
    int8_path = quantize_int8(onnx_path, tmp_path / "d_int8.onnx", _bevs(4))
    model_ops = {n.op_type for n in onnx.load(str(int8_path)).graph.node}
    assert "QuantizeLinear" in model_ops and "DequantizeLinear" in model_ops
    q = [ort_backend(int8_path, threads=1)(b) for b in bevs]
    qerr = head_errors(ref, q)
    assert qerr["heatmap_prob_mean_abs"] < INT8_MEAN_PROB_ABS
    assert qerr["heatmap_logit_max_abs"] > 0.0  # it really is a different (quantised) graph


def test_build_engine_validates_arguments_before_importing_tensorrt(tmp_path):
    with pytest.raises(ValueError, match="precision"):
        build_engine(tmp_path / "x.onnx", "fp8", tmp_path / "x.engine")
    with pytest.raises(ValueError, match="calibration"):
        build_engine(tmp_path / "x.onnx", "int8", tmp_path / "x.engine", calib_bev=None, cache_path=None)


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here: the build test below runs instead")
def test_build_engine_without_tensorrt_says_what_is_missing(tmp_path):
    with pytest.raises(RuntimeError, match="TensorRT is not installed"):
        build_engine(tmp_path / "x.onnx", "fp16", tmp_path / "x.engine")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT or not torch.cuda.is_available(),
                    reason="TensorRT engine build needs the tensorrt package and a CUDA GPU (neither is here)")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_engine_build_and_cache(tiny_model, tmp_path, precision):
    onnx_path = export_onnx(tiny_model, tmp_path / "d.onnx", (1, len(BEV_CHANNELS), GRID.size, GRID.size))
    cache = tmp_path / "d.calib" if precision == "int8" else None
    eng = build_engine(onnx_path, precision, tmp_path / f"d_{precision}.engine", _bevs(4), cache)
    assert eng.exists() and eng.with_suffix(eng.suffix + ".json").exists()
    if cache is not None:
        assert cache.exists()
    mtime = eng.stat().st_mtime
    assert build_engine(onnx_path, precision, eng, _bevs(4), cache).stat().st_mtime == mtime  # fresh: reused
