"""The models ``python -m export all`` knows, each behind the same steps: stage its inputs, export
ONNX, quantise for ONNX Runtime, build TensorRT engines, run it on torch-CUDA, check parity.

The recipes themselves live in the per-model modules and are called, not copied:
``export.detector`` (ONNX, static QDQ INT8, head-output errors), ``export.tokenizer`` (feature
output surgery, ONNX, dynamic INT8, token parity) and ``export.planner`` (LoRA merged, one graph
of the three stages, dynamic INT8 per-channel, trajectory parity on the planner's VAL shards).
TensorRT engines go through ``tps_inference.engine_cache`` (same key and metadata as the nodes'
cache, plus the INT8 calibration cache and the timing cache).
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.staging import MODELS, Artifact

LATENCY_WARMUP = 3

# Parity tolerances per row (metric, comparison, bound); a row passes when every listed metric
# that it reports holds. Chosen from the shipped models' VAL parity (models/*/parity.md) with a
# margin; task metrics (AP, code agreement) are the ones that matter.
DETECTOR_TOLERANCES: dict[str, list[tuple[str, str, float]]] = {
    "onnxruntime": [("heatmap_logit_max_abs", "<=", 1e-3), ("regression_max_abs", "<=", 1e-3),
                    ("mean_ap_diff", ">=", -0.005)],
    "onnxruntime-int8": [("heatmap_prob_mean_abs", "<=", 0.005), ("car_map_diff", ">=", -0.01),
                         ("mean_ap_diff", ">=", -0.02)],
    "tensorrt-fp16": [("heatmap_prob_mean_abs", "<=", 0.002), ("mean_ap_diff", ">=", -0.005)],
    "tensorrt-int8": [("heatmap_prob_mean_abs", "<=", 0.005), ("car_map_diff", ">=", -0.01),
                      ("mean_ap_diff", ">=", -0.02)],
    "torch-cuda-fp32": [("heatmap_logit_max_abs", "<=", 1e-2), ("mean_ap_diff", ">=", -0.005)],
    "torch-cuda-fp16": [("heatmap_prob_mean_abs", "<=", 0.002), ("mean_ap_diff", ">=", -0.005)],
}
TOKENIZER_TOLERANCES: dict[str, list[tuple[str, str, float]]] = {
    "tokenizer onnxruntime": [("code_agreement", ">=", 0.99), ("qerr_max_abs", "<=", 1e-3)],
    "tokenizer onnxruntime-int8": [("code_agreement", ">=", 0.90), ("qerr_mean_rel", "<=", 0.05)],
    "pipeline onnxruntime": [("code_agreement", ">=", 0.98)],
    "pipeline onnxruntime-int8": [("code_agreement", ">=", 0.85)],
    "tokenizer tensorrt-fp16": [("code_agreement", ">=", 0.97)],
    "tokenizer torch-cuda-fp16": [("code_agreement", ">=", 0.97)],
    "tokenizer torch-cuda-fp32": [("code_agreement", ">=", 0.99)],
}

# Planner rows: trajectory/forecast differences vs torch [m]; INT8 no more than 0.05 m worse in
# task-level mean L2 to the expert than ORT FP32 (issue 14's acceptance).
PLANNER_TOLERANCES: dict[str, list[tuple[str, str, float]]] = {
    "onnxruntime": [("traj_l2_max", "<=", 5e-3), ("forecast_l2_mean", "<=", 5e-3)],
    "onnxruntime-int8": [("l2_mean_diff_vs_fp32", "<=", 0.05)],
    "tensorrt-fp16": [("traj_l2_mean", "<=", 0.05)],
    "tensorrt-int8": [("l2_mean_diff_vs_torch", "<=", 0.05)],
}


def judge(row: dict, rules: list[tuple[str, str, float]]) -> tuple[str, list[str]]:
    """("pass" | "FAIL" | "-", the failed checks) of one parity row."""
    if "skipped" in row or not rules:
        return "-", []
    failed = []
    for metric, op, bound in rules:
        value = row.get(metric)
        if value is None:
            continue
        ok = value <= bound if op == "<=" else value >= bound
        if not ok:
            failed.append(f"{metric} {value:.4g} (needs {op} {bound:g})")
    return ("FAIL" if failed else "pass"), failed


def latency_ms(call: Callable[[], object], iters: int) -> dict:
    """Median / p90 wall time of ``call`` over ``iters`` runs after a warm-up [ms]."""
    for _ in range(LATENCY_WARMUP):
        call()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - t0))
    times.sort()
    return {"latency_ms_median": round(statistics.median(times), 3),
            "latency_ms_p90": round(times[min(len(times) - 1, int(0.9 * len(times)))], 3), "latency_iters": iters}


def check_onnx(path: Path) -> None:
    """onnx.checker (full) + strict shape inference; raises on any problem."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def ort_engine(path: Path, threads: int):
    """The artifact through the runtime the nodes use (tps_inference.Engine, ONNX Runtime CPU)."""
    from tps_inference import Engine, EngineParams
    from tps_inference.manifest import sha256_file

    params = EngineParams(backend="onnxruntime", device="cpu", ort_providers=("CPUExecutionProvider",),
                          intra_op_threads=threads, inter_op_threads=1)
    return Engine(path, params, sha256=sha256_file(path))


def tensorrt_engine(onnx_path: Path, precision: str, cache: Path, shapes: dict, *, calibration_cache: Path | None
                    = None, calibration_batches: list | None = None) -> Path:
    """Build (or reuse) a TensorRT engine in the export's engine cache, with the same key and
    metadata as the nodes' cache. INT8 from data writes the calibration cache first and keys the
    engine with its sha256."""
    from tps_inference.engine_cache import (
        current_key,
        engine_paths,
        get_or_build,
        tensorrt_builder,
        timing_cache_path,
        write_metadata,
    )

    timing = timing_cache_path(cache)
    if precision == "int8" and calibration_batches and calibration_cache and not calibration_cache.exists():
        engine, _ = engine_paths(cache, onnx_path, precision)
        engine.parent.mkdir(parents=True, exist_ok=True)
        info = tensorrt_builder(precision, shapes, 2048, calibration_cache=calibration_cache,
                                calibration_batches=calibration_batches, timing_cache=timing)(onnx_path, engine)
        write_metadata(engine, current_key(onnx_path, precision, shapes, calibration_cache), info)
        return engine
    key = current_key(onnx_path, precision, shapes, calibration_cache)
    build = tensorrt_builder(precision, shapes, 2048, calibration_cache=calibration_cache, timing_cache=timing)
    return get_or_build(onnx_path, cache, key, build)


def trt_runner(engine_path: Path):
    from tps_inference import Engine, EngineParams
    from tps_inference.manifest import sha256_file

    return Engine(engine_path, EngineParams(backend="tensorrt"), sha256=sha256_file(engine_path))


@dataclass
class ModelResult:
    """What one model's export produced."""

    artifacts: list[Artifact] = field(default_factory=list)
    parity: dict = field(default_factory=dict)      # row name -> metrics (+ verdict)
    cells: dict = field(default_factory=dict)       # (fmt, precision) -> status text
    source: str = ""


# ------------------------------------------------------------------------------------- detector


class DetectorExport:
    """Lidar detector: ``bev`` (1, 11, 128, 128) -> heatmap, regression, features."""

    name = "detector"
    weights = ("detector.pt", "detector.json")

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def missing(self) -> str:
        absent = [w for w in self.weights if not (MODELS / "detector" / w).exists()]
        return f"models/detector/{', '.join(absent)} missing (make train-detector)" if absent else ""

    def stage(self, stage: Path) -> Path:
        d = stage / "detector"
        d.mkdir(parents=True, exist_ok=True)
        for w in self.weights:
            shutil.copy2(MODELS / "detector" / w, d / w)
        return d

    def run(self, stage: Path, cells, frames, calib_frames, iters: int, engines: Path) -> ModelResult:
        from tps_perception.backends import load_meta, load_torch_model, ort_backend, torch_backend
        from tps_perception.pillars import BevGridParams, points_to_bev

        from export.detector import export_onnx, quantize_int8
        from export.tokenizer import add_feature_output

        res = ModelResult()
        d = self.stage(stage)
        model, ckpt = load_torch_model(d / "detector.pt")
        grid = BevGridParams(**ckpt["grid"])
        shape = (1, model.cfg.in_channels, grid.size, grid.size)
        out = grid.size // model.cfg.out_stride
        feat_shape = (1, model.cfg.head, out, out)
        # the shipped recipe: export -> quantise the two-output graph -> add `features` to both
        fp32 = export_onnx(model, d / "detector.onnx", shape)
        calib_bev = [points_to_bev(f.points, grid) for f in calib_frames]
        int8 = None
        if ("onnxruntime", "int8") in cells:
            int8 = quantize_int8(fp32, d / "detector_int8.onnx", calib_bev)
        for path in (fp32, int8):
            if path is not None:
                add_feature_output(path, path, feat_shape)
                check_onnx(path)
        res.artifacts.append(Artifact("detector_fp32", "detector", "onnx", "fp32", fp32, MODELS / "detector" /
                                      "detector.onnx", data="weights: models/detector/detector.pt"))
        res.cells[("onnx", "fp32")] = "exported"
        if int8 is not None:
            res.artifacts.append(Artifact("detector_int8", "detector", "onnxruntime", "int8", int8,
                                          MODELS / "detector" / "detector_int8.onnx",
                                          data=f"static QDQ calibrated on {len(calib_bev)} {frames.calib_source}"))
            res.cells[("onnxruntime", "int8")] = "exported"
        meta = load_meta(d)
        bevs = [points_to_bev(f.points, grid) for ep in frames.parity for f in ep]
        backends: dict[str, Callable] = {"torch": torch_backend(model, self.threads)}
        runners: dict[str, Callable] = {}
        if ("onnxruntime", "fp32") in cells:
            backends["onnxruntime"] = ort_backend(fp32, self.threads)
            runners["onnxruntime"] = self._engine_call(ort_engine(fp32, self.threads), bevs[0])
            res.cells[("onnxruntime", "fp32")] = "parity checked"
        if int8 is not None:
            backends["onnxruntime-int8"] = ort_backend(int8, self.threads)
            runners["onnxruntime-int8"] = self._engine_call(ort_engine(int8, self.threads), bevs[0])
        for prec in ("fp16", "int8"):
            if ("tensorrt", prec) not in cells:
                continue
            calib = d / "detector.trt_int8.calib" if prec == "int8" else None
            shapes = {"bev": (shape, shape, shape)}
            eng = tensorrt_engine(fp32, prec, engines, shapes, calibration_cache=calib,
                                  calibration_batches=[{"bev": b[None].astype(np.float32)} for b in calib_bev])
            res.artifacts.append(Artifact(f"detector_tensorrt_{prec}", "detector", "tensorrt", prec, eng, None))
            if calib is not None:
                res.artifacts.append(Artifact("detector_trt_int8_calib", "detector", "tensorrt", "int8", calib,
                                              MODELS / "detector" / "detector.trt_int8.calib",
                                              data=f"TensorRT entropy calibration on {len(calib_bev)} "
                                                   f"{frames.calib_source}"))
            engine = trt_runner(eng)
            backends[f"tensorrt-{prec}"] = self._head_call(engine)
            runners[f"tensorrt-{prec}"] = self._engine_call(engine, bevs[0])
            res.cells[("tensorrt", prec)] = "built"
        for prec in ("fp32", "fp16"):
            if ("torch-cuda", prec) in cells:
                engine = self._torch_cuda(model, shape, prec)
                backends[f"torch-cuda-{prec}"] = self._head_call(engine)
                runners[f"torch-cuda-{prec}"] = self._engine_call(engine, bevs[0])
                res.cells[("torch-cuda", prec)] = "run"
        res.parity = self.parity(meta, frames.parity, bevs, backends)
        import torch

        x = torch.from_numpy(bevs[0][None])
        with torch.inference_mode():
            res.parity["torch"].update(latency_ms(lambda: model(x), iters))
        for name, call in runners.items():
            res.parity[name].update(latency_ms(call, iters))
        for name, row in res.parity.items():
            row["verdict"], row["failed"] = judge(row, DETECTOR_TOLERANCES.get(name, []))
        for a in res.artifacts:
            key = {"detector_fp32": "onnxruntime", "detector_int8": "onnxruntime-int8"}.get(
                a.name, f"tensorrt-{a.precision}" if a.fmt == "tensorrt" else "")
            a.metrics = {k: round(v, 5) for k, v in res.parity.get(key, {}).items()
                         if k in ("car_map_diff", "mean_ap_diff", "heatmap_prob_mean_abs", "latency_ms_median")
                         and isinstance(v, float)}
        res.source = frames.parity_source
        return res

    @staticmethod
    def _engine_call(engine, bev: np.ndarray) -> Callable[[], object]:
        names = {s.name for s in engine.input_specs}
        inputs = {"bev": bev[None].astype(np.float32)} if "bev" in names else {engine.input_specs[0].name: bev[None]}
        return lambda: engine.run(inputs)

    @staticmethod
    def _head_call(engine) -> Callable:
        def run(bev: np.ndarray):
            out = engine({"bev": np.ascontiguousarray(bev[None], dtype=np.float32)})
            return np.asarray(out["heatmap"], np.float32)[0], np.asarray(out["regression"], np.float32)[0]
        return run

    def _torch_cuda(self, model, shape, precision: str):
        import copy

        from tps_inference import Engine, EngineParams, TensorSpec

        params = EngineParams(backend="torch", device="cuda", precision=precision)
        return Engine(copy.deepcopy(model), params, input_specs=[TensorSpec("bev", np.float32, shape)],
                      output_names=("heatmap", "regression"))

    def parity(self, meta: dict, episodes, bevs, backends: dict[str, Callable]) -> dict:
        """Head-output errors and car/mean AP difference of each backend vs torch FP32 (the
        ``export.detector.parity`` measures, for any backend callable)."""
        from tps_eval.detector.evaluate import run_detector, summarize
        from tps_perception.detector import Detector, DetectorParams

        from export.detector import head_errors

        params = DetectorParams.from_meta(meta, score_threshold=0.05)
        rows, ref_out, ref = {}, None, None
        for name, be in backends.items():
            outs = [be(b) for b in bevs]
            gt, pred, times = run_detector(episodes, Detector(params, be), progress=False)
            s = summarize(gt, pred, name, "parity", times)
            row = {"car_map": s["car_map"], "mean_ap": s["mean_ap"]}
            if ref_out is None:
                ref_out, ref = outs, s
            else:
                row.update(head_errors(ref_out, outs))
                row["car_map_diff"] = s["car_map"] - ref["car_map"]
                row["mean_ap_diff"] = s["mean_ap"] - ref["mean_ap"]
            rows[name] = row
        return rows


# ------------------------------------------------------------------------------------ tokenizer


class TokenizerExport:
    """Agent-Centric Tokenizer: (features, boxes, velocity) -> codes, qerr (+ scene codes).
    Needs the detector's staged graphs (features output) for its pipeline parity."""

    name = "tokenizer"
    weights = ("tokenizer.pt", "tokenizer_untargeted.pt", "tokenizer.json")

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def missing(self) -> str:
        absent = [w for w in self.weights[:1] + self.weights[2:] if not (MODELS / "tokenizer" / w).exists()]
        return f"models/tokenizer/{', '.join(absent)} missing (make train-tokenizer)" if absent else ""

    def stage(self, stage: Path) -> tuple[Path, Path]:
        d = stage / "tokenizer"
        d.mkdir(parents=True, exist_ok=True)
        for w in self.weights:
            if (MODELS / "tokenizer" / w).exists():
                shutil.copy2(MODELS / "tokenizer" / w, d / w)
        det = stage / "detector"
        if not (det / "detector.onnx").exists():  # detector not re-exported in this run: use the shipped graphs
            det.mkdir(parents=True, exist_ok=True)
            for w in ("detector.pt", "detector.json", "detector.onnx", "detector_int8.onnx"):
                shutil.copy2(MODELS / "detector" / w, det / w)
        return d, det

    def run(self, stage: Path, cells, frames, calib_frames, iters: int, engines: Path) -> ModelResult:
        from tps_perception.backends import load_meta
        from tps_perception.tokenizer_backends import (
            agent_profile,
            load_torch_tokenizer,
            onnx_name,
            weights_name,
        )

        from export.tokenizer import export_onnx, parity, quantize_int8

        res = ModelResult()
        d, det = self.stage(stage)
        det_meta = load_meta(det)
        size = int(round(2 * det_meta["grid"]["range_m"] / det_meta["grid"]["cell_m"])) // int(det_meta["net"]["out_stride"])
        feat_shape = (1, int(det_meta["net"]["head"]), size, size)
        tok = None
        for variant, manifest_base in (("targeted", "tokenizer"), ("untargeted", "tokenizer_untargeted")):
            if not (d / weights_name(variant)).exists():
                continue
            model, _ = load_torch_tokenizer(d / weights_name(variant))
            tok = model if variant == "targeted" else tok
            fp32 = export_onnx(model, d / onnx_name(variant), feat_shape)
            check_onnx(fp32)
            res.artifacts.append(Artifact(f"{manifest_base}_fp32", "tokenizer", "onnx", "fp32", fp32,
                                          MODELS / "tokenizer" / onnx_name(variant),
                                          data=f"weights: models/tokenizer/{weights_name(variant)}"))
            if ("onnxruntime", "int8") in cells:
                q = quantize_int8(fp32, d / onnx_name(variant, int8=True))
                check_onnx(q)
                res.artifacts.append(Artifact(f"{manifest_base}_int8", "tokenizer", "onnxruntime", "int8", q,
                                              MODELS / "tokenizer" / onnx_name(variant, int8=True),
                                              data="dynamic INT8 of the MLP Gemms (no calibration data)"))
        res.cells[("onnx", "fp32")] = "exported"
        if ("onnxruntime", "int8") in cells:
            res.cells[("onnxruntime", "int8")] = "exported"
        # parity of the ORT graphs: export.tokenizer's own check (tokenizer alone + whole pipeline)
        res.parity = parity(det, d, frames.parity, self.threads)
        res.cells[("onnxruntime", "fp32")] = "parity checked"
        gpu_rows = {}
        max_agents = int(tok.cfg.max_agents)
        for prec in ("fp16",):
            if ("tensorrt", prec) in cells:
                shapes = dict(agent_profile(max_agents), features=(feat_shape,) * 3)
                eng = tensorrt_engine(d / onnx_name("targeted"), prec, engines, shapes)
                res.artifacts.append(Artifact(f"tokenizer_tensorrt_{prec}", "tokenizer", "tensorrt", prec, eng, None))
                gpu_rows[f"tokenizer tensorrt-{prec}"] = trt_runner(eng)
                res.cells[("tensorrt", prec)] = "built"
        if ("tensorrt", "int8") in cells:
            res.cells[("tensorrt", "int8")] = "not built: the VQ distances/argmin need FP32 (the TensorRT recipe " \
                                              "of tokenizer_int8 is FP16)"
        for prec in ("fp32", "fp16"):
            if ("torch-cuda", prec) in cells:
                from tps_inference import Engine, EngineParams, TensorSpec
                from tps_perception.tokenizer_model import TokenizerGraph

                specs = [TensorSpec("features", np.float32, feat_shape), TensorSpec("boxes", np.float32, (1, None, 7)),
                         TensorSpec("velocity", np.float32, (1, None, 2))]
                gpu_rows[f"tokenizer torch-cuda-{prec}"] = Engine(
                    TokenizerGraph(tok).eval(), EngineParams(backend="torch", device="cuda", precision=prec),
                    input_specs=specs, output_names=("codes", "qerr", "scene_codes", "scene_qerr"))
                res.cells[("torch-cuda", prec)] = "run"
        if gpu_rows:
            res.parity.update(self._gpu_parity(det, d, frames.parity, gpu_rows))
        # latency of each runtime on one 32-agent call
        inputs = {"features": np.random.default_rng(0).normal(size=feat_shape).astype(np.float32),
                  "boxes": np.zeros((1, 32, 7), np.float32), "velocity": np.zeros((1, 32, 2), np.float32)}
        inputs["boxes"][0, :, 3:6] = (4.5, 1.9, 1.5)
        inputs["boxes"][0, :, 0] = np.linspace(-30, 30, 32)
        for row, path in (("tokenizer onnxruntime", d / onnx_name("targeted")),
                          ("tokenizer onnxruntime-int8", d / onnx_name("targeted", int8=True))):
            if path.exists() and row in res.parity:
                engine = ort_engine(path, self.threads)
                res.parity[row].update(latency_ms(lambda e=engine: e.run(inputs), iters))
        for row, engine in gpu_rows.items():
            res.parity[row].update(latency_ms(lambda e=engine: e.run(inputs), iters))
        for name, row in res.parity.items():
            row["verdict"], row["failed"] = judge(row, TOKENIZER_TOLERANCES.get(name, []))
        for a in res.artifacts:
            row = res.parity.get({"tokenizer_fp32": "tokenizer onnxruntime",
                                  "tokenizer_int8": "tokenizer onnxruntime-int8"}.get(a.name, ""), {})
            a.metrics = {k: round(v, 5) for k, v in row.items()
                         if k in ("code_agreement", "qerr_mean_abs", "latency_ms_median") and isinstance(v, float)}
        res.source = frames.parity_source
        return res

    def _gpu_parity(self, det: Path, tok_dir: Path, episodes, engines: dict) -> dict:
        """Token parity of GPU runtimes on the torch pipeline's own features and boxes."""
        from tps_perception.backends import load_meta, load_torch_model
        from tps_perception.tokenizer import PerceptionTokenizer, TokenizerParams
        from tps_perception.tokenizer_backends import (
            chunked_token_runner,
            load_tokenizer_meta,
            load_torch_tokenizer,
            torch_feature_backend,
            torch_token_backend,
            weights_name,
        )

        from export.tokenizer import token_parity

        params = TokenizerParams.from_meta(load_meta(det), load_tokenizer_meta(tok_dir))
        net, _ = load_torch_model(det / "detector.pt")
        tok, _ = load_torch_tokenizer(tok_dir / weights_name("targeted"))
        core = PerceptionTokenizer(params, torch_feature_backend(net, self.threads),
                                   torch_token_backend(tok, self.threads), keep_features=True)
        inputs, ref = [], []
        for ep in episodes:
            core.reset()
            for f in ep:
                r = core.run(f.points, f.t_s, f.ego_pose)
                inputs.append((r.features, r.detections.boxes, r.velocities))
                ref.append((r.tokens.codes, r.tokens.qerr))
        rows = {}
        for name, engine in engines.items():
            def call(feat, b, v, e=engine):
                out = e({"features": feat, "boxes": b, "velocity": v})
                return tuple(np.asarray(out[k]) for k in ("codes", "qerr", "scene_codes", "scene_qerr"))
            runner = chunked_token_runner(call, int(tok.cfg.max_agents), False)
            rows[name] = token_parity(ref, [runner(f, b, v)[:2] for f, b, v in inputs])
        return rows


class PlannerExport:
    """The VLM planner (``export.planner``): the checkpoint (models/planner/planner.pt, else the
    newest runs/planner/*/planner.pt) -> one ONNX graph of all three stages (LoRA merged, the
    word-embedding lookup outside) -> ORT dynamic INT8 (per-channel; per-tensor as a comparison
    row) -> TensorRT FP16/INT8 on a GPU. Parity on the planner's own VAL shards (data/planner/val;
    synthetic frames without them), not the detector frames the other models use."""

    name = "planner"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def missing(self) -> str:
        from export.planner import default_checkpoint

        try:
            default_checkpoint()
        except FileNotFoundError as exc:
            return str(exc)
        return ""

    def run(self, stage: Path, cells, frames, calib_frames, iters: int, engines: Path) -> ModelResult:
        from tps_planner.vlm.inputs import stack_frames
        from tps_planner.vlm.layout import PlannerConfig
        from tps_planner.vlm.runtime import PlannerRuntime, load_embeddings

        from export.planner import (
            FILES,
            build_tensorrt,
            calibration_inputs,
            default_checkpoint,
            export_all,
            export_runtimes,
            parity,
            parity_frames,
        )
        from export.staging import REPO, command_line

        res = ModelResult()
        ckpt = default_checkpoint()
        d = stage / "planner"
        data_root = REPO / "data" / "planner"
        man = export_all(ckpt, d, per_tensor=("onnxruntime", "int8") in cells, made_by=command_line())
        check_onnx(d / FILES["fp32"])
        src = f"weights: {ckpt.relative_to(REPO) if ckpt.is_relative_to(REPO) else ckpt}"
        shipped = MODELS / "planner"
        res.artifacts.append(Artifact("planner_fp32", "planner", "onnx", "fp32", d / FILES["fp32"],
                                      shipped / FILES["fp32"], data=src))
        res.artifacts.append(Artifact("planner_word_embeddings", "planner", "onnx", "fp32", d / FILES["embeddings"],
                                      shipped / FILES["embeddings"],
                                      data=f"{src}; the trunk's word embeddings ({man['embeddings']['dtype']})"))
        res.cells[("onnx", "fp32")] = "exported"
        if ("onnxruntime", "int8") in cells:
            res.artifacts.append(Artifact("planner_int8", "planner", "onnxruntime", "int8", d / FILES["int8"],
                                          shipped / FILES["int8"], data=f"{src}; dynamic INT8, per-channel (no data)"))
            res.cells[("onnxruntime", "int8")] = "exported"
        cfg = PlannerConfig.from_dict(man["config"])
        extra, trt_skipped = {}, {}
        trt_cells = [p for p in ("fp16", "int8") if ("tensorrt", p) in cells]
        if trt_cells:
            table = load_embeddings(d, man["embeddings"], cfg.d_model)
            calib = calibration_inputs(data_root, cfg, table, len(calib_frames) or 64) if "int8" in trt_cells else []
            built = build_tensorrt(d, man, calib, engines)
            for prec in trt_cells:
                row = built.get(f"tensorrt-{prec}", {})
                if "skipped" in row:
                    res.cells[("tensorrt", prec)] = "not built (see its parity row)"
                    trt_skipped[f"tensorrt-{prec}"] = row
                    continue
                extra[f"tensorrt-{prec}"] = PlannerRuntime(d, "tensorrt", self.threads, precision=prec,
                                                           engine_cache=engines)
                res.artifacts.append(Artifact(f"planner_tensorrt_{prec}", "planner", "tensorrt", prec,
                                              Path(row["engine"]), None))
                res.cells[("tensorrt", prec)] = "built"
        for prec in ("fp32", "fp16"):
            if ("torch-cuda", prec) in cells:
                res.cells[("torch-cuda", prec)] = "not offered: the planner runtime runs torch on the CPU"
        runtimes = export_runtimes(d, ckpt, self.threads, extra)
        if ("onnxruntime", "int8") not in cells:
            runtimes.pop("onnxruntime-int8", None)
        # as many planner VAL shards as the run's --parity-episodes (all their frames)
        pf, texts, plans, valid, source = parity_frames(data_root, cfg, max(1, len(frames.parity)))
        res.parity = parity(runtimes, pf, texts, plans, valid, cfg.plan_dt_s)
        res.parity.update(trt_skipped)
        res.cells[("onnxruntime", "fp32")] = "parity checked"
        # latency: one frame with the most agents, all three stages, as the node calls it
        k = int(np.argmax([f["agent_mask"].sum() for f in pf]))
        batch = stack_frames([pf[k]])
        for name, rt in runtimes.items():
            res.parity[name].update(latency_ms(lambda r=rt: r.run(batch, [texts[k]]), iters))
        for name, row in res.parity.items():
            row["verdict"], row["failed"] = judge(row, PLANNER_TOLERANCES.get(name, []))
        for a in res.artifacts:
            row = res.parity.get({"planner_fp32": "onnxruntime", "planner_int8": "onnxruntime-int8"}.get(
                a.name, f"tensorrt-{a.precision}" if a.fmt == "tensorrt" else ""), {})
            a.metrics = {m: round(v, 5) for m, v in row.items()
                         if m in ("traj_l2_mean", "traj_l2_max", "l2_mean", "l2_mean_diff_vs_fp32", "latency_ms_median")
                         and isinstance(v, float)}
        res.source = source
        return res


MODEL_CLASSES = {"detector": DetectorExport, "tokenizer": TokenizerExport, "planner": PlannerExport}
