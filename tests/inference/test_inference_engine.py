"""tps_inference.Engine: ONNX Runtime and torch backends, backend: auto, input checks, artifact trust."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from inference_models import IN_FEATURES, OUT_FEATURES, dense_relu_reference, dense_relu_weights
from tps_common.params import ParameterError
from tps_inference import (
    ArtifactChecksumError,
    ArtifactMissingError,
    BackendUnavailableError,
    Engine,
    EngineParams,
    InputDtypeError,
    InputError,
    InputNameError,
    InputShapeError,
    InputValueError,
    ManifestError,
    TensorSpec,
    select_backend,
)
from tps_inference.backends.onnxruntime_backend import provider_options
from tps_inference.device import cuda_status, tensorrt_status
from tps_inference.engine import model_kind
from tps_inference.manifest import sha256_file

ATOL = 1e-5  # float32 matmul of 3 terms; ORT and numpy may sum in different orders
BATCH = 5
RNG_SEED = 11
HAS_TRT_GPU = tensorrt_status()[0] and cuda_status()[0]


def x_batch(n: int = BATCH) -> np.ndarray:
    return np.random.default_rng(RNG_SEED).normal(size=(n, IN_FEATURES)).astype(np.float32)


def ort_engine(models_dir: Path, name: str = "dense_relu", **params) -> Engine:
    return Engine(models_dir / "toy" / f"{name}.onnx", EngineParams(backend="onnxruntime", **params),
                  manifest=models_dir / "manifest.yaml")


# ------------------------------------------------------------------------------------------------
# ONNX Runtime


def test_ort_backend_runs_model_with_correct_outputs(models_dir):
    engine = ort_engine(models_dir)
    assert engine.backend_name == "onnxruntime" and engine.device == "cpu"
    assert engine.input_specs == (TensorSpec("x", np.float32, ("batch", IN_FEATURES)),)
    assert [(s.name, s.dtype, s.shape) for s in engine.output_specs] == [
        ("y", np.dtype(np.float32), ("batch", OUT_FEATURES)), ("x_squared", np.dtype(np.float32), ("batch", IN_FEATURES))]
    for n in (1, BATCH, 64):  # the dynamic batch dimension
        x = x_batch(n)
        result = engine.run({"x": x})
        expected = dense_relu_reference(x)
        assert set(result.outputs) == {"y", "x_squared"}
        np.testing.assert_allclose(result["y"], expected["y"], atol=ATOL)
        np.testing.assert_allclose(result["x_squared"], expected["x_squared"], atol=ATOL)
        assert result.host_time_ms > 0.0 and result.device_time_ms is None
    assert engine.calls == 3 and engine.last_result is result
    assert "x: float32[batch, 3]" in engine.describe()


def test_ort_two_inputs_and_integer_input(models_dir):
    engine = Engine.from_manifest("two_inputs", EngineParams(backend="onnxruntime"), manifest=models_dir / "manifest.yaml")
    a, b = x_batch(3).repeat(2, axis=1)[:, :4], np.ones((3, 4), np.float32)
    out = engine({"a": a, "b": b, "k": np.array([3], np.int64)})["out"]
    np.testing.assert_allclose(out, a + 3.0 * b, atol=ATOL)


def test_ort_session_options_come_from_params(models_dir):
    engine = ort_engine(models_dir, intra_op_threads=1, inter_op_threads=1, graph_optimization="basic")
    options = engine.backend.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC


def test_ort_provider_order_drops_unavailable_providers(models_dir):
    available = ort.get_available_providers()
    engine = ort_engine(models_dir, ort_providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    expected = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    assert engine.backend.providers[: len(expected)] == expected or engine.backend.providers == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        assert engine.backend.dropped_providers == ["CUDAExecutionProvider"]
        assert "unavailable here: ['CUDAExecutionProvider']" in engine.backend.detail
        with pytest.raises(BackendUnavailableError, match="none of the ONNX Runtime execution providers"):
            ort_engine(models_dir, device="cuda", ort_providers=("CUDAExecutionProvider",))


def test_ort_provider_options_carry_precision_and_cache():
    params = EngineParams(precision="fp16", trt_workspace_mb=256)
    trt = provider_options("TensorrtExecutionProvider", params, "/cache")
    assert trt["trt_fp16_enable"] == "True" and trt["trt_int8_enable"] == "False"
    assert trt["trt_engine_cache_path"] == "/cache" and trt["trt_max_workspace_size"] == str(256 << 20)
    assert provider_options("TensorrtExecutionProvider", EngineParams(precision="int8"), "/c")["trt_int8_enable"] == "True"
    assert provider_options("CPUExecutionProvider", params, "/cache") == {}


def test_result_diagnostics(models_dir):
    result = ort_engine(models_dir).run({"x": x_batch()})
    diag = result.diagnostics()
    assert set(diag) == {"host_time_ms"} and float(diag["host_time_ms"]) == pytest.approx(result.host_time_ms, abs=1e-3)


@pytest.mark.skipif(HAS_TRT_GPU, reason="this machine has TensorRT and a GPU: auto picks TensorRT (tested there)")
def test_backend_auto_selects_onnxruntime_cpu_and_logs_why(models_dir, caplog):
    with caplog.at_level(logging.INFO, logger="tps_inference.engine"):
        engine = Engine(models_dir / "toy" / "dense_relu.onnx", EngineParams(), manifest=models_dir / "manifest.yaml")
    assert engine.backend_name == "onnxruntime" and engine.device == "cpu"
    assert engine.backend.providers[-1] == "CPUExecutionProvider"
    log = caplog.text
    assert "backend onnxruntime on cpu" in log and "CPUExecutionProvider" in log
    assert "why: ONNX model; " + tensorrt_status()[1] in log
    np.testing.assert_allclose(engine({"x": x_batch()})["y"], dense_relu_reference(x_batch())["y"], atol=ATOL)


# ------------------------------------------------------------------------------------------------
# input checking


def bad_input_cases():
    x = x_batch()
    nan = x.copy()
    nan[2, 1] = np.nan
    inf = x.copy()
    inf[0, 0], inf[4, 2] = np.inf, -np.inf
    return [
        ("unknown name", {"X": x}, InputNameError, r"unknown input\(s\) \['X'\]; the model's inputs are: x: float32\[batch, 3\]"),
        ("missing", {}, InputNameError, r"missing input\(s\) \['x'\]"),
        ("dtype", {"x": x.astype(np.float64)}, InputDtypeError,
         r"input 'x' has dtype float64; expected float32 \(x: float32\[batch, 3\]\)"),
        ("not an array", {"x": x.tolist()}, InputDtypeError, r"input 'x' must be a numpy.ndarray of float32, got list"),
        ("rank", {"x": x[0]}, InputShapeError, r"input 'x' has rank 1 \(shape \(3,\)\); expected rank 2"),
        ("fixed dim", {"x": np.zeros((BATCH, 4), np.float32)}, InputShapeError,
         r"input 'x' has shape \(5, 4\); dimension 1 must be 3"),
        ("nan", {"x": nan}, InputValueError, r"input 'x' contains 1 NaN and 0 inf value\(s\) \(first at index \(2, 1\)\)"),
        ("inf", {"x": inf}, InputValueError, r"input 'x' contains 0 NaN and 2 inf value\(s\) \(first at index \(0, 0\)\)"),
    ]


@pytest.mark.parametrize("case, inputs, error, message", bad_input_cases(), ids=[c[0] for c in bad_input_cases()])
def test_bad_inputs_raise_documented_error_naming_the_input(models_dir, case, inputs, error, message):
    engine = ort_engine(models_dir)
    with pytest.raises(error, match=message) as info:
        engine.run(inputs)
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)
    assert engine.calls == 0
    np.testing.assert_allclose(engine({"x": x_batch()})["y"], dense_relu_reference(x_batch())["y"], atol=ATOL)


def test_named_dynamic_dims_must_agree_across_inputs(models_dir):
    engine = ort_engine(models_dir, name="two_inputs")
    ok = {"a": np.zeros((2, 4), np.float32), "b": np.zeros((2, 4), np.float32), "k": np.ones(1, np.int64)}
    engine.run(ok)
    with pytest.raises(InputShapeError, match=r"input 'b' dimension 0 \('batch'\) is 3, but input 'a' has 'batch' = 2"):
        engine.run({**ok, "b": np.zeros((3, 4), np.float32)})
    with pytest.raises(InputDtypeError, match="input 'k' has dtype int32; expected int64"):
        engine.run({**ok, "k": np.ones(1, np.int32)})


def test_nonfinite_allowed_where_declared(models_dir):
    x = x_batch()
    x[1, 1] = np.nan
    lenient = Engine(models_dir / "toy" / "dense_relu.onnx", EngineParams(backend="onnxruntime"),
                     manifest=models_dir / "manifest.yaml", allow_nonfinite=["x"])
    assert np.isnan(lenient({"x": x})["x_squared"][1, 1])
    unchecked = ort_engine(models_dir, check_finite=False)
    assert np.isnan(unchecked({"x": x})["x_squared"][1, 1])


# ------------------------------------------------------------------------------------------------
# artifact trust


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_model_file_is_refused_naming_the_file(models_dir):
    path = models_dir / "toy" / "dense_relu.onnx"
    flip_one_byte(path)
    with pytest.raises(ArtifactChecksumError, match=rf"{path}.* failed its sha256 check"):
        Engine(path, manifest=models_dir / "manifest.yaml")
    with pytest.raises(ArtifactChecksumError, match=r"model 'dense_relu' file .*dense_relu.onnx failed its sha256"):
        Engine.from_manifest("dense_relu", manifest=models_dir / "manifest.yaml")


def test_missing_unlisted_and_mismatching_files_are_refused(models_dir, tmp_path):
    manifest = models_dir / "manifest.yaml"
    missing = models_dir / "toy" / "nowhere.onnx"
    with pytest.raises(ArtifactMissingError, match=f"model file not found: {missing}"):
        Engine(missing, manifest=manifest)
    listed = models_dir / "toy" / "dense_relu.onnx"
    listed.rename(missing.with_name("moved.onnx"))
    with pytest.raises(ArtifactMissingError, match=r"model .dense_relu. file not found: .*dense_relu.onnx"):
        Engine.from_manifest("dense_relu", manifest=manifest)
    unlisted = tmp_path / "unlisted.onnx"
    unlisted.write_bytes(missing.with_name("moved.onnx").read_bytes())
    with pytest.raises(ManifestError, match=rf"model file {unlisted} is not listed in .*manifest.yaml"):
        Engine(unlisted, manifest=manifest)
    with pytest.raises(ArtifactChecksumError, match=f"model file {unlisted} failed its sha256 check"):
        Engine(unlisted, sha256="0" * 64)
    engine = Engine(unlisted, EngineParams(backend="onnxruntime"), sha256=sha256_file(unlisted))
    assert engine.backend_name == "onnxruntime"
    with pytest.raises(ManifestError, match=r"model 'nope' is not listed"):
        Engine.from_manifest("nope", manifest=manifest)


# ------------------------------------------------------------------------------------------------
# torch backend


def torch_dense_relu():
    torch = pytest.importorskip("torch")
    w, b = dense_relu_weights()
    lin = torch.nn.Linear(IN_FEATURES, OUT_FEATURES)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w.T.copy()))
        lin.bias.copy_(torch.from_numpy(b))

    class DenseRelu(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return torch.relu(self.lin(x)), x * x

    return DenseRelu().eval()


X_SPEC = TensorSpec("x", np.float32, ("batch", IN_FEATURES))


def test_torch_module_backend_matches_onnxruntime(models_dir, caplog):
    with caplog.at_level(logging.INFO, logger="tps_inference.engine"):
        engine = Engine(torch_dense_relu(), EngineParams(device="cpu"), input_specs=[X_SPEC],
                        output_names=["y", "x_squared"])
    assert engine.backend_name == "torch" and engine.device == "cpu"
    assert "torch model; device: cpu requested" in caplog.text
    x = x_batch()
    torch_out = engine.run({"x": x})
    ort_out = ort_engine(models_dir).run({"x": x})
    for name in ("y", "x_squared"):
        np.testing.assert_allclose(torch_out[name], ort_out[name], atol=ATOL)
    assert [s.name for s in engine.output_specs] == ["y", "x_squared"]
    with pytest.raises(InputShapeError, match="dimension 1 must be 3"):
        engine.run({"x": np.zeros((2, 5), np.float32)})


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torch_checkpoint_is_not_mistaken_for_torchscript(tmp_path):
    torch = pytest.importorskip("torch")
    ckpt = tmp_path / "detector.pt"
    torch.save({"state_dict": torch_dense_relu().state_dict()}, str(ckpt))
    with pytest.raises(BackendUnavailableError, match=rf"{ckpt} is not a TorchScript file .* passed to Engine as an nn.Module"):
        Engine(ckpt, sha256=sha256_file(ckpt), input_specs=[X_SPEC])


def test_torch_module_needs_input_specs():
    with pytest.raises(BackendUnavailableError, match="does not describe its inputs; pass input_specs"):
        Engine(torch_dense_relu(), EngineParams(device="cpu"))


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torchscript_and_exported_program_files(tmp_path):
    torch = pytest.importorskip("torch")
    module = torch_dense_relu()
    x = x_batch()
    expected = dense_relu_reference(x)
    ts_path = tmp_path / "dense_relu.ts"
    torch.jit.script(module).save(str(ts_path))
    ts = Engine(ts_path, EngineParams(backend="torch"), sha256=sha256_file(ts_path), input_specs=[X_SPEC])
    np.testing.assert_allclose(ts.run({"x": x})["output_0"], expected["y"], atol=ATOL)

    ep_path = tmp_path / "dense_relu.pt2"
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep = torch.export.export(module, (torch.from_numpy(x),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(ep, str(ep_path))
    engine = Engine(ep_path, EngineParams(), sha256=sha256_file(ep_path), output_names=["y", "x_squared"])
    (spec,) = engine.input_specs
    assert spec.name == "x" and spec.dtype == np.float32 and isinstance(spec.shape[0], str) and spec.shape[1] == 3
    for n in (2, BATCH):
        out = engine.run({"x": x_batch(n)})
        np.testing.assert_allclose(out["y"], dense_relu_reference(x_batch(n))["y"], atol=ATOL)
    flip_one_byte(ep_path)
    with pytest.raises(ArtifactChecksumError, match=str(ep_path)):
        Engine(ep_path, sha256=sha256_file(ts_path))


# ------------------------------------------------------------------------------------------------
# selection and parameters


@pytest.mark.parametrize("model, kind", [("m.onnx", "onnx"), ("m.engine", "tensorrt_engine"), ("m.plan", "tensorrt_engine"),
                                         ("m.pt", "torch_file"), ("m.pt2", "torch_file"), (lambda x: x, "torch_module")])
def test_model_kind(model, kind):
    assert model_kind(model) == kind


def test_unknown_model_type_and_mismatched_backend_are_refused():
    with pytest.raises(BackendUnavailableError, match=r"unknown type '.tflite'"):
        model_kind("m.tflite")
    with pytest.raises(BackendUnavailableError, match="backend 'onnxruntime' cannot run a torch file model"):
        select_backend("torch_file", EngineParams(backend="onnxruntime"))
    with pytest.raises(BackendUnavailableError, match="backend 'torch' cannot run a onnx model"):
        select_backend("onnx", EngineParams(backend="torch"))


@pytest.mark.skipif(HAS_TRT_GPU, reason="this machine has TensorRT and a GPU")
def test_requesting_tensorrt_without_it_says_what_is_missing(models_dir):
    with pytest.raises(BackendUnavailableError, match="TensorRT backend needed but"):
        Engine(models_dir / "toy" / "dense_relu.onnx", EngineParams(backend="tensorrt"),
               manifest=models_dir / "manifest.yaml")
    with pytest.raises(BackendUnavailableError, match="TensorRT backend needed but"):
        select_backend("tensorrt_engine", EngineParams())


@pytest.mark.skipif(cuda_status()[0], reason="this machine has a CUDA device")
def test_cuda_device_without_cuda_is_refused_for_torch():
    with pytest.raises(BackendUnavailableError, match="device 'cuda' requested for a torch model but no CUDA device"):
        select_backend("torch_module", EngineParams(device="cuda"))


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "tflite"}, r"'backend' = 'tflite' is not one of"),
    ({"device": "tpu"}, r"'device' = 'tpu' is not one of"),
    ({"precision": "int4"}, r"'precision' = 'int4'"),
    ({"graph_optimization": "max"}, r"'graph_optimization' = 'max'"),
    ({"intra_op_threads": -1}, r"'intra_op_threads' = -1 is out of range; allowed \[0, 256\]"),
    ({"ort_providers": ("CPU",)}, r"'ort_providers'"),
    ({"trt_input_shapes": {"x": ((4, 3), (2, 3), (8, 3))}}, r"trt_input_shapes\['x'\]' needs min <= opt <= max"),
])
def test_engine_params_are_validated(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        EngineParams(**kwargs)


def test_engine_params_from_node_parameters():
    params = EngineParams.from_mapping({"engine.backend": "onnxruntime", "engine.ort_providers": ["CPUExecutionProvider"],
                                        "engine.intra_op_threads": 2, "budget_ms": 40.0}, prefix="engine.")
    assert (params.backend, params.ort_providers, params.intra_op_threads) == ("onnxruntime", ("CPUExecutionProvider",), 2)
    assert EngineParams(ort_providers="CUDAExecutionProvider, CPUExecutionProvider").ort_providers == (
        "CUDAExecutionProvider", "CPUExecutionProvider")
