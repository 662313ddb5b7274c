"""Export the Agent-Centric Tokenizer: ``python -m export.tokenizer`` (``make export-tokenizer``).

Detector and tokenizer run in one process as two graphs chained in memory: the detector graph
gives the head outputs *and* its head input ``features``; the numpy decode + tracker finds the
agents; the tokenizer graph samples ``features`` at their boxes and returns codes. The BEV feature
map never leaves the process (and never crosses DDS). One graph end to end is not possible here:
the boxes come from the numpy decode and the velocities from the tracker, between the two.

=====================  ==========================================  ====================================
step                   function                                    artifact
=====================  ==========================================  ====================================
detector + features    :func:`add_feature_output` (graph surgery:  ``models/detector/detector.onnx``,
                       an Identity ``features`` on the tensor both  ``detector_int8.onnx`` (in place;
                       head branches read; nodes and weights        heatmap/regression checked
                       untouched)                                   bit-identical before/after)
ONNX FP32              :func:`export_onnx` (opset 17, dynamic       ``models/tokenizer/tokenizer.onnx``,
                       ``agents`` axis, GridSample)                 ``tokenizer_untargeted.onnx``
ORT INT8               :func:`quantize_int8` (dynamic INT8 of the   ``tokenizer_int8.onnx``,
                       MLP Gemms only, per-channel weights; VQ      ``tokenizer_untargeted_int8.onnx``
                       distances, argmin and GridSample stay FP32)
TensorRT FP16          ``export.detector.build_engine`` (GPU only)  ``tokenizer_fp16.engine`` + ``.json``
=====================  ==========================================  ====================================

Parity vs torch (``parity.json`` + ``parity.md``): on the agents of VAL frames, the share of
agents given the same code and the quantisation-error difference, for the tokenizer graph alone
(same features in) and for the whole pipeline (detector graph features -> tokenizer graph).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tps_eval.detector.data import episode_frames, shard_paths, synthetic_frames
from tps_perception.backends import default_model_dir, load_meta, load_torch_model
from tps_perception.tokenizer_backends import (
    FEATURE_OUTPUT,
    TOKEN_OUTPUTS,
    agent_profile,
    default_tokenizer_dir,
    load_torch_tokenizer,
    make_feature_backend,
    onnx_name,
    ort_token_backend,
    torch_feature_backend,
    torch_token_backend,
    weights_name,
)

from export.detector import OPSET, build_engine, sha256_of

HEAD_OUTPUT = "heatmap"


# --- detector graphs with the features output ---------------------------------------------------
def feature_tensor(graph) -> str:
    """Name of the tensor the detection head reads (input of the heatmap branch's first conv).

    Walks back from the ``heatmap`` output: its 1x1 conv, then through Relu / QuantizeLinear /
    DequantizeLinear to the branch's 3x3 conv, whose data input it returns (FP32: the shared
    block's Relu output; INT8 QDQ: the DequantizeLinear output the INT8 head convs read).
    """
    producer = {o: n for n in graph.node for o in n.output}
    node = producer[HEAD_OUTPUT]
    if node.op_type != "Conv":
        raise ValueError(f"'{HEAD_OUTPUT}' is produced by {node.op_type}, expected the head's 1x1 Conv")
    x = producer.get(node.input[0])
    while x is not None and x.op_type in ("Relu", "QuantizeLinear", "DequantizeLinear"):
        x = producer.get(x.input[0])
    if x is None or x.op_type != "Conv":
        raise ValueError("could not find the heatmap branch's first Conv")
    return x.input[0]


def add_feature_output(src: Path, dst: Path, shape: tuple[int, ...]) -> bool:
    """Add the graph output ``features`` (an Identity on :func:`feature_tensor`) to a detector
    graph; every other node, initializer and output is kept as it is. Returns False (and copies
    nothing) when ``src`` already has it."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(src))
    g = model.graph
    if FEATURE_OUTPUT in {o.name for o in g.output}:
        if Path(src) != Path(dst):
            onnx.save(model, str(dst))
        return False
    name = feature_tensor(g)
    g.node.append(helper.make_node("Identity", [name], [FEATURE_OUTPUT], name="features_output"))
    g.output.append(helper.make_tensor_value_info(FEATURE_OUTPUT, TensorProto.FLOAT, list(shape)))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return True


# --- tokenizer graph -------------------------------------------------------------------------------
def export_onnx(tok, path: Path, feature_shape: tuple[int, int, int, int], opset: int = OPSET) -> Path:
    """Export :class:`~tps_perception.tokenizer_model.TokenizerGraph`: ``features``
    ``feature_shape`` (static), ``boxes`` (1, agents, 7) and ``velocity`` (1, agents, 2) with a
    dynamic ``agents`` axis (the runtime passes exactly the agents it has, in chunks of at most
    ``max_agents``: the graph's cost grows with its rows, 0.3 ms for 8 and 1.9 ms for 128 here)."""
    import onnx
    import torch
    from tps_perception.tokenizer_model import TokenizerGraph

    if opset < 16:
        raise ValueError(f"opset must be >= 16 (GridSample), got {opset}")
    graph = TokenizerGraph(tok).eval()
    m = 4
    args = (torch.zeros(feature_shape), torch.zeros(1, m, 7), torch.zeros(1, m, 2))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    agents = {1: "agents"}
    torch.onnx.export(graph, args, str(path), opset_version=opset, input_names=["features", "boxes", "velocity"],
                      output_names=list(TOKEN_OUTPUTS), dynamo=False, do_constant_folding=True,
                      dynamic_axes={"boxes": agents, "velocity": agents, "codes": agents, "qerr": agents})
    onnx.checker.check_model(onnx.load(str(path)))
    return path


def quantize_int8(onnx_path: Path, out_path: Path) -> Path:
    """ORT INT8 of the tokenizer's MLP layers: dynamic quantisation of the Gemm nodes
    (per-channel int8 weights, activations quantised per call).

    Only Gemm nodes are quantised: the quantisation error *is* the novelty signal and the code is
    an argmin over distances, so the distance MatMul, its reductions and the argmin stay FP32, as
    does GridSample (bilinear weights). Chosen on VAL frames (agents keeping the FP32 code / mean
    |qerr| difference / ms per call with 128 agents): static QDQ of every Gemm 0.89 / 0.19 /
    1.6 ms, static with the first Gemm FP32 0.92 / 0.15 / 1.9 ms, dynamic 0.96 / 0.09 / 1.6 ms,
    FP32 1.00 / 0 / 2.0 ms.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the only MatMul nodes of the FP32 graph are the VQ distances; the quantiser turns each Gemm
    # into a MatMul (named ..._MatMul) before quantising it, hence both op types
    distances = [n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type == "MatMul"]
    quantize_dynamic(str(onnx_path), str(out_path), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["Gemm", "MatMul"], nodes_to_exclude=distances)
    return Path(out_path)


# --- parity -------------------------------------------------------------------------------------
def token_parity(ref: list[tuple[np.ndarray, np.ndarray]], other: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Code agreement and quantisation-error differences of ``other`` vs ``ref`` ((codes, qerr) per frame)."""
    rc = np.concatenate([r[0] for r in ref]) if ref else np.zeros(0)
    oc = np.concatenate([o[0] for o in other]) if other else np.zeros(0)
    rq = np.concatenate([r[1] for r in ref]) if ref else np.zeros(0)
    oq = np.concatenate([o[1] for o in other]) if other else np.zeros(0)
    if len(rc) == 0:
        return {"agents": 0}
    dq = np.abs(rq - oq)
    return {"agents": int(len(rc)), "code_agreement": float((rc == oc).mean()), "qerr_max_abs": float(dq.max()),
            "qerr_mean_abs": float(dq.mean()), "qerr_mean_rel": float((dq / np.maximum(rq, 1e-6)).mean())}


def parity(det_dir: Path, tok_dir: Path, episodes: list[list], threads: int = 2) -> dict:
    """Rows per backend pair: tokenizer graph alone (torch features in) and full pipeline."""
    from tps_perception.tokenizer import PerceptionTokenizer, TokenizerParams
    from tps_perception.tokenizer_backends import load_tokenizer_meta

    det_meta = load_meta(det_dir)
    tok_meta = load_tokenizer_meta(tok_dir)
    params = TokenizerParams.from_meta(det_meta, tok_meta)
    net, _ = load_torch_model(det_dir / "detector.pt")
    torch_feat = torch_feature_backend(net, threads)
    tok, _ = load_torch_tokenizer(tok_dir / weights_name("targeted"))
    torch_tok = torch_token_backend(tok, threads)
    # per frame: torch features and detections (the reference pipeline)
    ref_core = PerceptionTokenizer(params, torch_feat, torch_tok, keep_features=True)
    frames_in = []
    ref = []
    for ep in episodes:
        ref_core.reset()
        for f in ep:
            r = ref_core.run(f.points, f.t_s, f.ego_pose)
            frames_in.append((r.features, r.detections.boxes, r.velocities))
            ref.append((r.tokens.codes, r.tokens.qerr))
    rows: dict = {"torch": {"agents": int(sum(len(c) for c, _ in ref))}}
    for name, int8 in (("onnxruntime", False), ("onnxruntime-int8", True)):
        path = tok_dir / onnx_name("targeted", int8)
        if not path.exists():
            rows[f"tokenizer {name}"] = {"skipped": f"{path.name} not exported"}
            continue
        be = ort_token_backend(path, threads)
        outs = [be(feat, b, v)[:2] for feat, b, v in frames_in]
        rows[f"tokenizer {name}"] = token_parity(ref, outs)
    # full pipeline: detector graph (features output) -> tokenizer graph, matched to the reference agents
    for name, det_be, tok_int8 in (("pipeline onnxruntime", "onnxruntime", False),
                                   ("pipeline onnxruntime-int8, tokenizer fp32", "onnxruntime-int8", False),
                                   ("pipeline onnxruntime-int8", "onnxruntime-int8", True)):
        try:
            fb = make_feature_backend(det_be, det_dir, threads)
            tb = ort_token_backend(tok_dir / onnx_name("targeted", tok_int8), threads)
        except (FileNotFoundError, ValueError) as exc:
            rows[name] = {"skipped": str(exc)}
            continue
        core = PerceptionTokenizer(params, fb, tb)
        k = 0
        same, dq, n, n_det = 0, [], 0, 0
        for ep in episodes:
            core.reset()
            for f in ep:
                r = core.run(f.points, f.t_s, f.ego_pose)
                rb = frames_in[k][1]
                rc, rq = ref[k]
                k += 1
                n_det += len(r.detections)
                for j in range(len(r.detections)):
                    if len(rb) == 0:
                        break
                    d = np.hypot(rb[:, 0] - r.detections.boxes[j, 0], rb[:, 1] - r.detections.boxes[j, 1])
                    i = int(np.argmin(d))
                    if d[i] < 0.5:
                        n += 1
                        same += int(rc[i] == r.tokens.codes[j])
                        dq.append(abs(float(rq[i]) - float(r.tokens.qerr[j])))
        rows[name] = {"agents": n, "detections": n_det, "code_agreement": same / max(1, n),
                      "qerr_mean_abs": float(np.mean(dq)) if dq else None,
                      "qerr_max_abs": float(np.max(dq)) if dq else None}
    return rows


def heads_unchanged(originals: dict[str, bytes], det_dir: Path, frames, det_meta: dict, threads: int = 2) -> dict:
    """Head outputs of each detector graph after :func:`add_feature_output` vs the same graph
    before (``originals``: file name -> bytes), on ``frames``: the max abs difference (0 = the
    surgery changed nothing the detector computes)."""
    import tempfile

    from tps_perception.backends import ort_backend
    from tps_perception.pillars import BevGridParams, points_to_bev

    grid = BevGridParams(**det_meta["grid"])
    bevs = [points_to_bev(f.points, grid) for f in frames]
    out = {}
    for name, data in originals.items():
        with tempfile.TemporaryDirectory() as tmp:
            old_path = Path(tmp) / name
            old_path.write_bytes(data)
            old = ort_backend(old_path, threads)
            new = ort_backend(det_dir / name, threads)
            diff = 0.0
            for b in bevs:
                (h0, r0), (h1, r1) = old(b), new(b)
                diff = max(diff, float(np.abs(h0 - h1).max()), float(np.abs(r0 - r1).max()))
        out[name] = {"frames": len(bevs), "max_abs_diff": diff}
    return out


def parity_markdown(rows: dict, source: str) -> str:
    def f(v):
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    cols = ["agents", "code_agreement", "qerr_mean_abs", "qerr_max_abs", "qerr_mean_rel"]
    lines = [f"# Tokenizer export parity vs torch FP32 ({source})", "",
             "Tokenizer rows: the same (torch) features and boxes in. Pipeline rows: detector graph "
             "(features output) -> decode + tracker -> tokenizer graph, agents matched to the torch "
             "pipeline's within 0.5 m.", "", "| backend | " + " | ".join(cols) + " | note |",
             "|---" * (len(cols) + 2) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f(r.get(c)) for c in cols) + f" | {r.get('skipped', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector-dir", type=Path, default=None, help="default models/detector")
    ap.add_argument("--model-dir", type=Path, default=None, help="tokenizer weights (default models/tokenizer)")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--parity-episodes", type=int, default=4, help="VAL-split episodes for the parity check")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tensorrt", action="store_true", help="also build TensorRT FP16 engines (needs a GPU)")
    ap.add_argument("--synthetic", action="store_true", help="smoke runs only: synthetic scenes instead of shards")
    args = ap.parse_args(argv)
    t0 = time.time()
    det_dir = Path(args.detector_dir or default_model_dir())
    tok_dir = Path(args.model_dir or default_tokenizer_dir())
    det_meta = load_meta(det_dir)
    size = int(round(2 * det_meta["grid"]["range_m"] / det_meta["grid"]["cell_m"])) // int(det_meta["net"]["out_stride"])
    feat_shape = (1, int(det_meta["net"]["head"]), size, size)
    added, originals = {}, {}
    for name in ("detector.onnx", "detector_int8.onnx"):
        path = det_dir / name
        if path.exists():
            before = path.read_bytes()
            added[name] = add_feature_output(path, path, feat_shape)
            if added[name]:
                originals[name] = before
            print(f"{path}: features output {'added' if added[name] else 'already there'}")
    tok, ckpt = load_torch_tokenizer(tok_dir / weights_name("targeted"))
    fp32 = export_onnx(tok, tok_dir / onnx_name("targeted"), feat_shape)
    print(f"ONNX: {fp32}")
    un_path = tok_dir / weights_name("untargeted")
    if un_path.exists():
        un, _ = load_torch_tokenizer(un_path)
        print(f"ONNX: {export_onnx(un, tok_dir / onnx_name('untargeted'), feat_shape)}")
    if args.synthetic:
        parity_eps = [synthetic_frames(1000 + k, 4) for k in range(args.parity_episodes)]
        source = "synthetic scenes (smoke)"
    else:
        val_paths = shard_paths("val", args.data_root)
        pick = np.linspace(0, len(val_paths) - 1, min(args.parity_episodes, len(val_paths))).round().astype(int)
        parity_eps = [list(episode_frames(val_paths[i])) for i in sorted(set(pick.tolist()))]
        source = f"{sum(len(e) for e in parity_eps)} frames of {len(parity_eps)} VAL episodes"
    int8 = quantize_int8(fp32, tok_dir / onnx_name("targeted", int8=True))
    print(f"ORT INT8 (dynamic, Gemm only): {int8}")
    int8_paths = [int8]
    if un_path.exists():
        int8_paths.append(quantize_int8(tok_dir / onnx_name("untargeted"), tok_dir / onnx_name("untargeted", int8=True)))
    trt_rows = {}
    for name, src in (("tensorrt-fp16 tokenizer", fp32), ("tensorrt-fp16 detector+features", det_dir / "detector.onnx")):
        if not args.tensorrt:
            trt_rows[name] = {"skipped": "not requested (--tensorrt); needs TensorRT + a GPU"}
            continue
        try:
            build_engine(src, "fp16", src.with_name(src.stem + "_fp16.engine"),
                         profiles=agent_profile(tok.cfg.max_agents) if src == fp32 else None)
            trt_rows[name] = {"skipped": "engine built; TensorRT parity runs through tps_inference.Engine"}
        except (RuntimeError, ValueError) as exc:
            trt_rows[name] = {"skipped": str(exc)}
    heads = heads_unchanged(originals, det_dir, [f for ep in parity_eps for f in ep], det_meta, args.threads)
    for name, r in heads.items():
        print(f"{name}: heatmap/regression vs the graph without `features` on {r['frames']} frames: "
              f"max abs difference {r['max_abs_diff']}")
    rows = parity(det_dir, tok_dir, parity_eps, args.threads)
    rows.update(trt_rows)
    md = parity_markdown(rows, source)
    print(md)
    out = {"source": source, "rows": rows, "feature_output_added": added, "heads_unchanged": heads,
           "sha256": {p.name: sha256_of(p) for p in [fp32, *int8_paths, *(det_dir / n for n in added)]},
           "wall_s": round(time.time() - t0, 1),
           "tokenizer_info": ckpt.get("info", {}).get("command")}
    (tok_dir / "parity.json").write_text(json.dumps(out, indent=2) + "\n")
    (tok_dir / "parity.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
