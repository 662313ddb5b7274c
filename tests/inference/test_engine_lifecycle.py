"""Engine lifecycle (tps_inference.lifecycle): a cached TensorRT engine built from other ONNX bytes
is stale and never used -- checked through the cache metadata, which needs no TensorRT -- and
perception_node's ``build_only`` builds/validates its engines, says what it found and exits.

The engine files here are placeholders written with real metadata (what a vehicle's cache holds);
building a real engine needs TensorRT and a GPU (tests/inference/test_inference_engine_cache.py
does that where they exist)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from tps_inference import EngineParams
from tps_inference.device import cuda_status, tensorrt_status
from tps_inference.engine_cache import engine_paths, onnx_profile_shapes, probe_key, write_metadata
from tps_inference.lifecycle import build_models, inspect_engine, summarize, tensorrt_plan
from tps_inference.manifest import Manifest, add_entry

REPO = Path(__file__).resolve().parents[2]
VEHICLE_TRT, VEHICLE_GPU = "10.3.0", "Orin"   # what a Jetson's cache metadata would hold
NODE_TIMEOUT_S = 120.0                       # process start + onnxruntime import + one run, loaded host
HAVE_TENSORRT = tensorrt_status()[0] and cuda_status()[0]


def fake_cached_engine(cache: Path, onnx_path: Path, precision: str, shapes=None) -> Path:
    """An engine file + metadata as a TensorRT machine would have written them for ``onnx_path``."""
    shapes = shapes or onnx_profile_shapes(onnx_path, {})
    key, _, _ = probe_key(onnx_path, precision, shapes)
    key = type(key)(key.onnx_sha256, VEHICLE_TRT, VEHICLE_GPU, precision, shapes, key.calibration_sha256)
    engine, _ = engine_paths(cache, onnx_path, precision)
    engine.parent.mkdir(parents=True, exist_ok=True)
    engine.write_bytes(b"placeholder engine bytes (no TensorRT here)")
    write_metadata(engine, key, {"builder": "test placeholder"})
    return engine


def reexport(onnx_path: Path, note: str) -> None:
    """Different ONNX bytes, same computation (as a re-export with another exporter would give)."""
    model = onnx.load(str(onnx_path))
    model.doc_string = note
    onnx.save(model, str(onnx_path))


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT and a GPU are here: the engine would really be built")
def test_changed_onnx_bytes_make_the_cached_engine_stale(models_dir, tmp_path):
    manifest = models_dir / "manifest.yaml"
    onnx_path = models_dir / "toy" / "dense_relu.onnx"
    params = EngineParams(precision="fp16", engine_cache_dir=str(tmp_path / "engines"),
                          trt_input_shapes={"x": ((1, 3), (4, 3), (16, 3))})
    plan = tensorrt_plan("dense_relu", Manifest.load(manifest), params)
    fake_cached_engine(tmp_path / "engines", onnx_path, "fp16", plan.input_shapes)
    fresh = inspect_engine(plan, tmp_path / "engines")
    assert fresh.state == "hit", fresh.describe()
    assert set(fresh.unchecked) >= {"tensorrt_version"}  # this machine cannot compare them

    reexport(onnx_path, "re-exported")
    add_entry(manifest, "dense_relu", onnx_path, made_by="test re-export", data="-", replace=True)
    man = Manifest.load(manifest)
    stale = inspect_engine(tensorrt_plan("dense_relu", man, params), tmp_path / "engines")
    assert stale.state == "stale"
    assert "onnx_sha256" in stale.describe() and "tensorrt_version" not in stale.status.reason

    reports = build_models(["dense_relu"], params, manifest=man)
    text, code = summarize(reports)
    assert code == 0 and reports[0].backend == "onnxruntime"  # ORT runs the model here; the engine is unused
    assert "stale" in text and "not used" in text and "rebuilt" in text
    refuse = build_models(["dense_relu"], EngineParams(**{**params.__dict__, "rebuild_stale_engine": False}),
                          manifest=man)
    assert "refused" in summarize(refuse)[0]


def test_int8_recipe_without_its_calibration_cache_is_refused_by_name(models_dir):
    manifest = models_dir / "manifest.yaml"
    text = manifest.read_text().replace(
        "  dense_relu:\n", "  dense_relu:\n    tensorrt: {source: dense_relu, precision: int8, calibration: toy_calib}\n")
    manifest.write_text(text)
    params = EngineParams(trt_input_shapes={"x": ((1, 3), (4, 3), (16, 3))})
    plan = tensorrt_plan("dense_relu", Manifest.load(manifest), params)
    assert plan.precision == "int8" and "toy_calib" in plan.problem and "fp16" in plan.problem
    assert inspect_engine(plan, models_dir / "engines").state == "unavailable"


def test_build_only_reports_every_model_and_fails_on_a_bad_one(models_dir, tmp_path):
    params = EngineParams(backend="onnxruntime", engine_cache_dir=str(tmp_path / "e"))
    reports = build_models(["dense_relu", "two_inputs", "not_listed"], params,
                           manifest=models_dir / "manifest.yaml")
    text, code = summarize(reports)
    assert [r.ready for r in reports] == [True, True, False]
    assert code == 1 and "not_listed" in text and "2/3 model(s) ready" in text
    assert reports[0].run_ms is not None  # each model ran once on zeros


# ------------------------------------------------------------------------- the node says so


@pytest.fixture
def detector_models(tmp_path) -> Path:
    """A models/ folder with the shipped FP32 detector graph and its metadata, listed in its own manifest."""
    root = tmp_path / "models"
    (root / "detector").mkdir(parents=True)
    for name in ("detector.onnx", "detector.json"):
        shutil.copy(REPO / "models" / "detector" / name, root / "detector" / name)
    (root / "manifest.yaml").write_text("version: 1\nmodels:\n")
    add_entry(root / "manifest.yaml", "detector_fp32", root / "detector" / "detector.onnx",
              made_by="copy of models/detector/detector.onnx", data="shipped")
    return root


def run_build_only(models: Path, cache: Path, **params) -> tuple[int, str]:
    exe = Path(sys.executable).parent / "perception_node"
    args = [str(exe), "--ros-args", "--params-file", str(REPO / "config" / "perception_node.param.yaml"),
            "-p", "model_name:=detector_fp32", "-p", "build_only:=true", "-p", f"engine_cache_dir:={cache}",
            "-p", "tokenizer_enabled:=false"]  # the detector's engine alone (its manifest lists no tokenizer)
    for k, v in params.items():
        args += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
    env = dict(os.environ, TPS_MANIFEST=str(models / "manifest.yaml"))  # the session's ROS domain
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT_S)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.ros
@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT and a GPU are here: the placeholder engine would be loaded")
def test_perception_node_build_only_says_the_engine_is_stale(detector_models, tmp_path):
    onnx_path = detector_models / "detector" / "detector.onnx"
    cache = tmp_path / "engines"
    fake_cached_engine(cache, onnx_path, "fp16")

    code, out = run_build_only(detector_models, cache)
    assert code == 0, out
    assert "[READY] detector_fp32: onnxruntime/cpu" in out and "TensorRT engine cache: hit" in out, out

    reexport(onnx_path, "re-exported by a newer exporter")
    add_entry(detector_models / "manifest.yaml", "detector_fp32", onnx_path, made_by="re-export", data="shipped",
              replace=True)
    code, out = run_build_only(detector_models, cache)
    assert code == 0, out  # ONNX Runtime runs the model here; the stale engine is reported, not used
    assert "stale" in out and "onnx_sha256" in out and "is not used here" in out, out

    code, out = run_build_only(detector_models, cache, backend="tensorrt", rebuild_stale_engine=False)
    assert code == 1, out
    assert "NOT READY" in out and "stale" in out and "tensorrt" in out.lower(), out
