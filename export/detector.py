"""Export the detector: ``python -m export.detector`` (``make export-detector``).

Formats (pure functions, arguments validated up front):

=================  ==========================================  ===========================
format             function                                    artifact (models/detector/)
=================  ==========================================  ===========================
ONNX FP32          :func:`export_onnx` (opset 17)              ``detector.onnx``
ORT INT8 (QDQ)     :func:`quantize_int8` (static, TRAIN-split  ``detector_int8.onnx``
                   calibration frames)
TensorRT FP16      :func:`build_engine` (``fp16``)             ``detector_fp16.engine`` + ``.json``
TensorRT INT8      :func:`build_engine` (``int8`` + calib.     ``detector_int8.engine`` + ``.json``,
                   cache)                                      ``detector_int8.calib``
=================  ==========================================  ===========================

The BEV scatter is numpy preprocessing, so the graph is static-shape ``bev`` (1, C, H, W) ->
``heatmap``, ``regression`` (+ ``features``, the head input the agent tokenizer samples, added by
``export.tokenizer.add_feature_output`` after export and quantisation). Then a parity check per format: max/mean abs error of the head
outputs vs torch on VAL-split frames and the AP difference on those frames
(``parity.json`` + ``parity.md``). TensorRT runs only where ``tensorrt`` and a GPU exist; elsewhere
its rows say why they were skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tps_eval.detector.data import Frame, episode_frames, shard_paths, synthetic_frames
from tps_perception.backends import default_model_dir, load_meta, load_torch_model, make_backend
from tps_perception.pillars import BevGridParams, points_to_bev

OPSET = 17
TRT_PRECISIONS = ("fp16", "int8")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_onnx(model, path: Path, input_shape: tuple[int, int, int, int], opset: int = OPSET) -> Path:
    """Export a CenterNet to ONNX (static shape, input ``bev``, outputs ``heatmap``, ``regression``)."""
    import torch

    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    model.eval()
    dummy = torch.zeros(input_shape, dtype=torch.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter: the graph is plain convs, and it folds BatchNorm into them.
    torch.onnx.export(model, (dummy,), str(path), opset_version=opset, input_names=["bev"],
                      output_names=["heatmap", "regression"], dynamo=False, do_constant_folding=True)
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))
    return path


def calibration_frames(count: int, root: Path | None = None, seed: int = 0) -> list[Frame]:
    """``count`` frames from TRAIN-split shards, spread over episodes (never val/test)."""
    paths = shard_paths("train", root)
    if not paths:
        raise FileNotFoundError("no TRAIN shards for INT8 calibration (run `tps-sim dataset --split train`)")
    rng = np.random.default_rng(seed)
    paths = [paths[i] for i in rng.permutation(len(paths))]
    per_ep = max(1, count // max(1, min(len(paths), count)))
    frames: list[Frame] = []
    for p in paths:
        eps = list(episode_frames(p))
        idx = rng.choice(len(eps), size=min(per_ep, len(eps)), replace=False)
        frames += [eps[i] for i in sorted(idx)]
        if len(frames) >= count:
            break
    return frames[:count]


def output_nodes(onnx_path: Path) -> list[str]:
    """Names of the nodes that produce the graph outputs (the two 1x1 head convs)."""
    import onnx

    g = onnx.load(str(onnx_path)).graph
    outs = {o.name for o in g.output}
    return [n.name for n in g.node if outs & set(n.output)]


def input_nodes(onnx_path: Path) -> list[str]:
    """Names of the nodes that read the graph input (the first stem conv)."""
    import onnx

    g = onnx.load(str(onnx_path)).graph
    ins = {i.name for i in g.input}
    return [n.name for n in g.node if ins & set(n.input)]


def quantize_int8(onnx_path: Path, out_path: Path, calib_bev: list[np.ndarray], keep_io_fp32: bool = True,
                  pre_process: bool = False) -> Path:
    """Static INT8 QDQ quantisation (per-channel int8 weights, uint8 activations, MinMax calibration).

    ``keep_io_fp32`` leaves the first conv (it reads the 11 pillar statistics, whose ranges differ
    a lot: one uint8 scale for all of them loses the small ones) and the two final 1x1 output
    convs (heatmap logits, box regression) in FP32 -- a few % of the compute. Chosen on VAL
    episodes: mean-AP difference to torch -0.004 with them FP32 vs -0.010 with only the output
    convs FP32. ``pre_process`` runs ORT's ``quant_pre_process`` first (off: it failed on some
    graphs here, and the shipped model was quantised without it).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not calib_bev:
        raise ValueError("INT8 quantisation needs at least one calibration tensor")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(calib_bev)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {"bev": x[None].astype(np.float32)}

    src = Path(onnx_path)
    src_q = src
    if pre_process:
        try:  # shape inference + optimisation first; it fails on some graphs (ENVIRONMENT.md)
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = src.with_name(src.stem + "_pre.onnx")
            quant_pre_process(str(src), str(pre))
            src_q = pre
        except Exception as exc:  # noqa: BLE001 - any failure: quantise the plain graph instead
            print(f"quant_pre_process failed ({exc}); quantising without it")
    exclude = (output_nodes(src_q) + input_nodes(src_q)) if keep_io_fp32 else []
    quantize_static(str(src_q), str(out_path), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude)
    if src_q != src:
        src_q.unlink(missing_ok=True)
    return Path(out_path)


def build_engine(onnx_path: Path, precision: str, engine_path: Path, calib_bev: list[np.ndarray] | None = None,
                 cache_path: Path | None = None, workspace_mib: int = 1024,
                 profiles: dict[str, tuple[tuple[int, ...], ...]] | None = None) -> Path:
    """Build a TensorRT engine (FP16, or INT8 with an entropy calibrator and a calibration cache).

    Validates arguments first (precision one of fp16/int8; INT8 needs calibration data or an
    existing cache), then imports tensorrt (raises RuntimeError saying what is missing). Writes
    ``<engine>.json`` next to the engine: sha256 of the ONNX, TensorRT version, GPU, precision.
    A stale engine (ONNX sha256 differs) is rebuilt, never reused. ``profiles`` (input name ->
    (min, opt, max) shapes) is the optimisation profile of a graph with dynamic inputs.
    """
    if precision not in TRT_PRECISIONS:
        raise ValueError(f"precision must be one of {TRT_PRECISIONS} (INT8 excludes FP16), got {precision!r}")
    if precision == "int8" and not calib_bev and not (cache_path and Path(cache_path).exists()):
        raise ValueError("INT8 engine needs calibration tensors or an existing calibration cache")
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeError(f"TensorRT is not installed ({exc}); engines build only where it exists") from exc
    try:
        from cuda import cudart
    except ImportError as exc:
        raise RuntimeError(f"cuda-python is needed for the INT8 calibrator / GPU name ({exc})") from exc
    onnx_sha = sha256_of(onnx_path)
    engine_path = Path(engine_path)
    meta_path = engine_path.with_suffix(engine_path.suffix + ".json")
    if engine_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("onnx_sha256") == onnx_sha and meta.get("tensorrt") == trt.__version__:
            return engine_path
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profiles.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _make_calibrator(trt, cudart, calib_bev or [], cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT engine build failed for {onnx_path} ({precision})")
    engine_path.write_bytes(bytes(serialized))
    _, props = cudart.cudaGetDeviceProperties(0)
    meta_path.write_text(json.dumps({"onnx": str(onnx_path), "onnx_sha256": onnx_sha, "tensorrt": trt.__version__,
                                     "gpu": props.name.decode() if hasattr(props.name, "decode") else str(props.name),
                                     "precision": precision, "calibration_cache": str(cache_path or "")}, indent=2))
    return engine_path


def _make_calibrator(trt, cudart, calib_bev: list[np.ndarray], cache_path: Path | None):
    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.data = list(calib_bev)
            self.k = 0
            nbytes = int(self.data[0][None].astype(np.float32).nbytes) if self.data else 4
            _, self.dev = cudart.cudaMalloc(nbytes)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            if self.k >= len(self.data):
                return None
            x = np.ascontiguousarray(self.data[self.k][None], dtype=np.float32)
            cudart.cudaMemcpy(self.dev, x.ctypes.data, x.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
            self.k += 1
            return [int(self.dev)]

        def read_calibration_cache(self):
            if cache_path and Path(cache_path).exists():
                return Path(cache_path).read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if cache_path:
                Path(cache_path).write_bytes(bytes(cache))

    return _Calibrator()


def head_errors(ref: list[tuple[np.ndarray, np.ndarray]], other: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Max / mean abs error of heatmap probabilities and regression vs the reference outputs."""
    from tps_perception.postprocess import sigmoid

    hm_err = np.concatenate([np.abs(sigmoid(a[0]) - sigmoid(b[0])).ravel() for a, b in zip(ref, other, strict=True)])
    rg_err = np.concatenate([np.abs(a[1] - b[1]).ravel() for a, b in zip(ref, other, strict=True)])
    hl_err = np.concatenate([np.abs(a[0] - b[0]).ravel() for a, b in zip(ref, other, strict=True)])
    return {"heatmap_prob_max_abs": float(hm_err.max()), "heatmap_prob_mean_abs": float(hm_err.mean()),
            "heatmap_logit_max_abs": float(hl_err.max()), "heatmap_logit_mean_abs": float(hl_err.mean()),
            "regression_max_abs": float(rg_err.max()), "regression_mean_abs": float(rg_err.mean())}


def parity(model_dir: Path, frames_by_episode: list[list[Frame]], backends: list[str]) -> dict:
    """Head-output errors and car/mean AP difference of each backend vs torch on the given frames."""
    from tps_eval.detector.evaluate import run_detector, summarize
    from tps_perception.detector import Detector, DetectorParams

    meta = load_meta(model_dir)
    grid = BevGridParams(**meta["grid"])
    bevs = [points_to_bev(f.points, grid) for eps in frames_by_episode for f in eps]
    params = DetectorParams.from_meta(meta, score_threshold=0.05)
    rows = {}
    ref_out = None
    ref_map = None
    for name in ["torch"] + [b for b in backends if b != "torch"]:
        try:
            be = make_backend(name, model_dir)
        except (FileNotFoundError, RuntimeError, ValueError) as exc:
            rows[name] = {"skipped": str(exc)}
            continue
        outs = [be(b) for b in bevs]
        gt, pred, times = run_detector(frames_by_episode, Detector(params, be), progress=False)
        res = summarize(gt, pred, name, "parity", times)
        row = {"car_map": res["car_map"], "mean_ap": res["mean_ap"]}
        if ref_out is None:
            ref_out, ref_map = outs, res
        else:
            row.update(head_errors(ref_out, outs))
            row["car_map_diff"] = res["car_map"] - ref_map["car_map"]
            row["mean_ap_diff"] = res["mean_ap"] - ref_map["mean_ap"]
        rows[name] = row
    return rows


def parity_markdown(rows: dict, source: str) -> str:
    def f(v):
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    cols = ["car_map", "mean_ap", "car_map_diff", "mean_ap_diff", "heatmap_prob_max_abs", "heatmap_prob_mean_abs",
            "regression_max_abs", "regression_mean_abs"]
    lines = [f"# Detector export parity vs torch FP32 ({source})", "", "| backend | " + " | ".join(cols) + " | note |",
             "|---" * (len(cols) + 2) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f(r.get(c)) for c in cols) + f" | {r.get('skipped', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=None, help="holds detector.pt/.json (default models/detector)")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--calib-frames", type=int, default=64, help="TRAIN-split frames for INT8 calibration")
    ap.add_argument("--parity-episodes", type=int, default=4, help="VAL-split episodes for the parity check")
    ap.add_argument("--tensorrt", action="store_true", help="also build TensorRT FP16/INT8 engines (needs a GPU)")
    ap.add_argument("--synthetic", action="store_true",
                    help="smoke runs only: calibrate/check on tps_sim synthetic scenes instead of shards")
    args = ap.parse_args(argv)
    model_dir = Path(args.model_dir or default_model_dir())
    t0 = time.time()
    model, ckpt = load_torch_model(model_dir / "detector.pt")
    grid = BevGridParams(**ckpt["grid"])
    shape = (1, model.cfg.in_channels, grid.size, grid.size)
    onnx_path = export_onnx(model, model_dir / "detector.onnx", shape)
    print(f"ONNX: {onnx_path} (opset {OPSET}, input {shape})")
    if args.synthetic:
        calib = [f for k in range(4) for f in synthetic_frames(k, max(1, args.calib_frames // 4))]
        parity_eps = [synthetic_frames(1000 + k, 5) for k in range(args.parity_episodes)]
        source = "synthetic scenes (smoke)"
    else:
        calib = calibration_frames(args.calib_frames, args.data_root)
        val_paths = shard_paths("val", args.data_root)[: args.parity_episodes]
        parity_eps = [list(episode_frames(p)) for p in val_paths]
        source = f"{sum(len(e) for e in parity_eps)} frames of {len(parity_eps)} VAL episodes"
    calib_bev = [points_to_bev(f.points, grid) for f in calib]
    int8_path = quantize_int8(onnx_path, model_dir / "detector_int8.onnx", calib_bev)
    print(f"ORT INT8 QDQ: {int8_path} ({len(calib_bev)} TRAIN calibration frames)")
    # The agent tokenizer reads the head input: expose it as a third output `features` on both
    # graphs (graph surgery after export and quantisation; heatmap/regression unchanged).
    from export.tokenizer import add_feature_output

    out = grid.size // model.cfg.out_stride
    for path in (onnx_path, int8_path):
        add_feature_output(path, path, (1, model.cfg.head, out, out))
    trt_rows = {}
    for prec in TRT_PRECISIONS:
        name = f"tensorrt-{prec}"
        if not args.tensorrt:
            trt_rows[name] = {"skipped": "not requested (--tensorrt); needs TensorRT + a GPU"}
            continue
        try:
            build_engine(onnx_path, prec, model_dir / f"detector_{prec}.engine", calib_bev,
                         model_dir / "detector_int8.calib" if prec == "int8" else None)
            trt_rows[name] = {"skipped": "engine built; TensorRT parity runs through tps_inference.Engine"}
        except (RuntimeError, ValueError) as exc:
            trt_rows[name] = {"skipped": str(exc)}
    rows = parity(model_dir, parity_eps, ["onnxruntime", "onnxruntime-int8"])
    rows.update(trt_rows)
    md = parity_markdown(rows, source)
    print(md)
    out = {"source": source, "rows": rows, "onnx_sha256": sha256_of(onnx_path),
           "int8_sha256": sha256_of(int8_path), "calibration_frames": len(calib_bev),
           "wall_s": round(time.time() - t0, 1)}
    (model_dir / "parity.json").write_text(json.dumps(out, indent=2) + "\n")
    (model_dir / "parity.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
