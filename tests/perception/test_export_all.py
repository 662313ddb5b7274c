"""``python -m export all``: arguments validated up front (INT8 needs calibration data, TensorRT a
GPU and the package), the formats x precisions table, and -- on the shipped models, with
synthetic frames because CI has no dataset -- ONNX + ORT INT8 for every model, parity rows,
TensorRT rows that say why they were not built, models/ left byte-identical, and the staged
artifacts compared with the shipped ones (reproduced, or differing with an explanation)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from export.formats import Capabilities, plan, table_markdown
from export.staging import Artifact, compare

ROOT = Path(__file__).resolve().parents[2]
NO_GPU = Capabilities(False, "tensorrt not importable (test)", False, "no CUDA device (test)")
GPU_NO_TRT = Capabilities(False, "tensorrt not importable (test)", True, "CUDA device 'X' (test)")
EXPORT_TIMEOUT_S = 900.0   # two models, synthetic parity frames, on 2 loaded cores


def test_plan_skips_what_this_machine_cannot_build_and_says_why():
    p, errors = plan(["all"], ["fp32", "fp16", "int8"], NO_GPU, have_train=True, have_val=True, synthetic=False)
    assert not errors
    assert set(p.cells) == {("onnx", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    assert all("tensorrt package" in w for (f, _), w in p.skipped.items() if f == "tensorrt")
    assert ("torch-cuda", "fp16") in p.skipped
    p, _ = plan(["all"], ["fp16"], GPU_NO_TRT, have_train=True, have_val=True, synthetic=False)
    assert ("torch-cuda", "fp16") in p.cells and ("onnx", "fp32") in p.cells  # ONNX is always the source


def test_plan_refuses_impossible_requests_naming_what_is_missing():
    _, errors = plan(["tensorrt"], ["fp16"], NO_GPU, have_train=True, have_val=True, synthetic=False)
    assert errors and "tensorrt package" in errors[0] and "GPU" in errors[0]
    _, errors = plan(["onnxruntime"], ["int8"], NO_GPU, have_train=False, have_val=True, synthetic=False)
    assert any("INT8 needs calibration data" in e for e in errors)
    _, errors = plan(["onnxruntime"], ["fp32"], NO_GPU, have_train=False, have_val=False, synthetic=False)
    assert any("VAL" in e for e in errors) and not any("INT8" in e for e in errors)
    p, errors = plan(["onnxruntime"], ["int8"], NO_GPU, have_train=False, have_val=False, synthetic=True)
    assert not errors and ("onnxruntime", "int8") in p.cells
    p, _ = plan(["onnxruntime"], ["fp16"], NO_GPU, have_train=True, have_val=True, synthetic=False)
    assert any("not offered" in n for n in p.notes)


def test_table_lists_every_format_and_precision():
    table = table_markdown()
    for word in ("onnx", "onnxruntime", "tensorrt", "torch-cuda", "fp32", "fp16", "int8", "calibration"):
        assert word in table


def test_compare_reports_reproduced_and_explains_a_difference(tmp_path):
    import onnx

    shipped = ROOT / "models" / "tokenizer" / "tokenizer.onnx"
    same = tmp_path / "same.onnx"
    same.write_bytes(shipped.read_bytes())
    a = compare(Artifact("tokenizer_fp32", "tokenizer", "onnx", "fp32", same, shipped))
    assert a.status == "reproduced" and "byte-identical" in a.explanation
    model = onnx.load(str(shipped))
    model.producer_version = "9.9"
    init = model.graph.initializer[0]
    arr = onnx.numpy_helper.to_array(init).copy()
    arr.flat[0] += 1.0
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    b = compare(Artifact("tokenizer_fp32", "tokenizer", "onnx", "fp32", other, shipped))
    assert b.status == "differs"
    assert "producer" in b.explanation and "1 of" in b.explanation and "same graph structure" in b.explanation


def _models_digest() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((ROOT / "models").rglob("*")) if p.is_file()}


def _export(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=EXPORT_TIMEOUT_S, env=env)


def test_bad_requests_exit_2_before_any_work(tmp_path):
    out = _export("all", "--target", "tensorrt", "--synthetic", "--staging", str(tmp_path / "s"))
    if "tensorrt: available" in _export("formats").stdout:
        pytest.skip("TensorRT and a GPU are here: --target tensorrt is possible")
    assert out.returncode == 2 and "TensorRT engines need the tensorrt package" in out.stderr
    empty = tmp_path / "no_data"
    empty.mkdir()
    out = _export("all", "--precision", "int8", "--data-root", str(empty), "--staging", str(tmp_path / "s"))
    assert out.returncode == 2 and "INT8 needs calibration data" in out.stderr
    assert not (tmp_path / "s").exists()  # nothing was started


@pytest.mark.slow
def test_export_all_on_the_shipped_models_stages_everything_and_leaves_models_untouched(tmp_path):
    before = _models_digest()
    stage = tmp_path / "stage"
    out = _export("all", "--synthetic", "--calib-frames", "8", "--parity-episodes", "1", "--synthetic-frames", "3",
                  "--latency-iters", "5", "--staging", str(stage))
    assert out.returncode in (0, 1), out.stdout[-3000:] + out.stderr[-3000:]
    assert _models_digest() == before, "export all changed a file under models/"
    report = json.loads((stage / "report.json").read_text())
    arts = {a["name"]: a for a in report["artifacts"]}
    for name in ("detector_fp32", "detector_int8", "tokenizer_fp32", "tokenizer_int8", "tokenizer_untargeted_fp32",
                 "tokenizer_untargeted_int8"):
        assert name in arts and Path(arts[name]["file"]).is_file(), name
    # the FP32 graphs and the tokenizer's dynamic INT8 need no data: re-exporting reproduces the shipped bytes
    # (on another CPU the folded weights may round differently: the same model within 1e-6, other bytes)
    for name in ("detector_fp32", "tokenizer_fp32", "tokenizer_int8"):
        assert arts[name]["status"] in ("reproduced", "reproduced-numerically"), (name, arts[name]["explanation"])
    # the detector's static INT8 was calibrated on synthetic frames here: it differs, explained, staged
    assert arts["detector_int8"]["status"] == "differs"
    assert "quantisation" in arts["detector_int8"]["explanation"]
    staged = (stage / "manifest.yaml").read_text()
    assert "detector_int8" in staged and "detector_fp32:" not in staged
    det, tok = report["parity"]["detector"], report["parity"]["tokenizer"]
    assert det["onnxruntime"]["verdict"] == "pass" and det["onnxruntime"]["heatmap_logit_max_abs"] < 1e-3
    assert tok["tokenizer onnxruntime"]["verdict"] == "pass"
    for row in (det["onnxruntime"], det["onnxruntime-int8"], tok["tokenizer onnxruntime-int8"]):
        assert row["latency_ms_median"] > 0
    planner = report["parity"]["planner"]          # exported when a checkpoint exists (export.planner)
    if isinstance(planner, str):
        assert "no planner checkpoint" in planner
    else:
        assert Path(arts["planner_fp32"]["file"]).is_file() and Path(arts["planner_int8"]["file"]).is_file()
        assert planner["onnxruntime"]["verdict"] == "pass" and planner["onnxruntime"]["traj_l2_max"] < 5e-3
        assert planner["onnxruntime-int8"]["latency_ms_median"] > 0
    if "tensorrt/fp16" in report["skipped"]:
        assert "NVIDIA GPU" in report["skipped"]["tensorrt/fp16"]
        assert "TensorRT engines need" in out.stdout
