"""Export the VLM planner: ``python -m export.planner`` (``make export-planner``).

One ONNX graph holds all three stages (scene understanding -> forecasting -> ego action). Why one
and not one per stage: the three passes share the same trunk weights, so one graph stores them
once (three graphs would store the 11M-parameter encoder three times, or need shared external
data); the stage-1/2 probabilities that stages 2/3 read stay inside the graph, in FP32, exactly the
tensors returned (and rendered into the rationale); and one ONNX Runtime call per frame costs less
than three. The what-if overrides of :meth:`VLMPlanner.forward` stay a torch feature.

=========================  ==================================================  =======================
step                       how                                                 file (in the export dir)
=========================  ==================================================  =======================
LoRA merged                ``peft`` ``merge_and_unload``: the trunk becomes a  -
                           plain ``BertModel`` (W + B A scale, no adapters)
word embeddings            the trunk's word-embedding table, saved as numpy    ``word_embeddings.npy``
                           (fp16 by default, ``--embeddings-dtype``); the
                           lookup is a numpy gather outside the graph
ONNX FP32                  :func:`export_onnx`: opset 17, inputs ``text_embeds``  ``planner.onnx``
                           (B, T, 384) + ``text_mask`` + camera, ego, agent
                           tokens; dynamic axes ``batch`` and ``agents``
                           (1..max_agents)
ORT INT8 per-channel       :func:`quantize_int8` (``quantize_dynamic``,        ``planner_int8.onnx``
                           per-channel int8 weights of every MatMul/Gemm,
                           activations quantised per call)
ORT INT8 per-tensor        the same with one scale per weight (comparison      ``planner_int8_pt.onnx``
                           row only; ``--no-per-tensor`` skips it)
TensorRT FP16 / INT8       ``--tensorrt``: ``tps_inference.engine_cache``      ``engines/``,
                           (GPU + TensorRT only; skipped with the reason       ``planner.trt_int8.calib``
                           elsewhere; INT8: entropy calibration on TRAIN
                           frames)
manifest                   every file with sha256, the command, the parity     ``planner_export.json``
                           figures; what :class:`PlannerRuntime` reads
=========================  ==================================================  =======================

Parity (``parity.json`` + ``parity.md`` beside the files): on frames of VAL shards
(``data/planner/val``; TRAIN/VAL only, TEST seeds are refused) each backend vs torch: mean and
max trajectory L2 difference [m], max abs differences of every output, and the task-level mean L2
to the expert plan at 1/2/3 s for each backend.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OPSET = 17
FILES = {"fp32": "planner.onnx", "int8": "planner_int8.onnx", "int8_per_tensor": "planner_int8_pt.onnx",
         "embeddings": "word_embeddings.npy"}
GRAPH_INPUTS = ("text_embeds", "text_mask", "camera", "camera_valid", "ego", "agent_codes", "agent_feats",
                "agent_mask")
AGENT_INPUTS = ("agent_codes", "agent_feats", "agent_mask")


def default_checkpoint() -> Path:
    """models/planner/planner.pt when shipped, else the newest runs/planner/*/planner.pt."""
    shipped = REPO / "models" / "planner" / "planner.pt"
    if shipped.exists():
        return shipped
    runs = sorted((REPO / "runs" / "planner").glob("*/planner.pt"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError("no planner checkpoint: models/planner/planner.pt and runs/planner/*/planner.pt "
                                "are missing (make train-planner)")
    return runs[-1]


# --- the graph ----------------------------------------------------------------------------------
def merged_copy(model):
    """A copy of a loaded planner whose trunk is a plain ``BertModel`` (LoRA merged into the base
    weights; eager attention so the exported graph is plain MatMul/Softmax)."""
    m = copy.deepcopy(model).eval()
    trunk = m.trunk
    if hasattr(trunk, "merge_and_unload"):
        trunk = trunk.merge_and_unload()
    m.trunk = trunk
    cfg = getattr(trunk, "config", None)
    if cfg is not None:
        cfg._attn_implementation = "eager"
    if m.camera is not None:
        m.camera.pool = _static_pool(m.camera, m.cfg)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _static_pool(camera, cfg):
    """The camera encoder's ``AdaptiveAvgPool2d`` as fixed slices + means for the camera's fixed
    size (ONNX has no adaptive pooling whose bins overlap, e.g. 10 columns -> 4: bins of 3 at
    0, 2, 5, 7); the same bins as torch's, so the values match to float rounding."""
    import torch

    w, h = cfg.camera_size
    with torch.no_grad():
        fh, fw = camera.convs(torch.zeros(1, 3, int(h), int(w))).shape[2:]
    rows, cols = (int(v) for v in cfg.camera_grid)

    def bins(n_in: int, n_out: int) -> list[tuple[int, int]]:
        return [((j * n_in) // n_out, -((-(j + 1) * n_in) // n_out)) for j in range(n_out)]

    class StaticAdaptiveAvgPool(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rb, self.cb = bins(int(fh), rows), bins(int(fw), cols)

        def forward(self, x):
            cells = [x[:, :, r0:r1, c0:c1].mean(dim=(2, 3)) for r0, r1 in self.rb for c0, c1 in self.cb]
            return torch.stack(cells, -1).reshape(x.shape[0], x.shape[1], rows, cols)

    return StaticAdaptiveAvgPool()


def _traceable_positions(base: dict) -> dict:
    """``base["pos"]`` recomputed without the in-place slice assignment (which the ONNX tracer
    bakes into a fixed batch size): 0..T-1 for the text, T for every other token -- the same
    values (``min(index, T)``)."""
    import torch

    mask = base["mask"]
    row = torch.arange(mask.shape[1], device=mask.device).clamp(max=base["text_len"])
    return {**base, "pos": row[None, :] + torch.zeros_like(mask, dtype=torch.long)}


def _graph_module(model):
    import torch

    class PlannerGraph(torch.nn.Module):
        """The planner's forward with the word-embedding lookup replaced by the ``text_embeds``
        input; outputs in :data:`tps_planner.vlm.runtime.OUTPUT_KEYS` order."""

        def __init__(self, planner) -> None:
            super().__init__()
            self.planner = planner

        def forward(self, text_embeds, text_mask, camera, camera_valid, ego, agent_codes, agent_feats, agent_mask):
            from tps_planner.vlm.runtime import OUTPUT_KEYS

            p = self.planner
            batch = {"text_ids": text_mask.long(), "text_mask": text_mask, "camera": camera,
                     "camera_valid": camera_valid, "ego": ego, "agent_codes": agent_codes,
                     "agent_feats": agent_feats, "agent_mask": agent_mask}
            # the lookup happens outside: word_embeddings(ids) returns the given embeddings
            p.word_embeddings = lambda ids: text_embeds
            p.encode_inputs = lambda b: _traceable_positions(type(p).encode_inputs(p, b))
            try:
                out = p(batch)
            finally:
                del p.word_embeddings, p.encode_inputs
            flat = {**out["p1"], **out["p2"], **out["s3"]}
            return tuple(flat[k] for k in OUTPUT_KEYS)

    return PlannerGraph(model).eval()


def example_inputs(cfg, b: int = 1, a: int = 4, seed: int = 0) -> dict:
    """Random, well-formed graph inputs (numpy) of ``b`` frames with ``a`` agent slots."""
    from tps_planner.vlm.layout import AGENT_DIM

    rng = np.random.default_rng(seed)
    w, h = cfg.camera_size
    t = cfg.max_text_tokens
    mask = np.zeros((b, t), bool)
    mask[:, :5] = True
    amask = np.zeros((b, a), bool)
    amask[:, :max(1, a - 1)] = True
    return {"text_embeds": (rng.normal(0, 0.05, (b, t, cfg.d_model))).astype(np.float32), "text_mask": mask,
            "camera": rng.random((b, 3, h, w), dtype=np.float32), "camera_valid": np.ones(b, bool),
            "ego": rng.normal(0, 0.3, (b, cfg.ego_dim)).astype(np.float32),
            "agent_codes": rng.integers(0, cfg.codebook_size, (b, a)).astype(np.int64),
            "agent_feats": rng.normal(0, 0.3, (b, a, AGENT_DIM)).astype(np.float32), "agent_mask": amask}


def export_onnx(merged, path: Path, opset: int = OPSET) -> Path:
    """Export a :func:`merged_copy` planner to ONNX (module docstring); dynamic ``batch`` and
    ``agents`` axes."""
    import onnx
    import torch
    from tps_planner.vlm.runtime import OUTPUT_KEYS

    graph = _graph_module(merged)
    ex = example_inputs(merged.cfg, b=2, a=5)
    args = tuple(torch.from_numpy(ex[k]) for k in GRAPH_INPUTS)
    dyn = {k: {0: "batch"} for k in GRAPH_INPUTS}
    for k in AGENT_INPUTS:
        dyn[k] = {0: "batch", 1: "agents"}
    for k in OUTPUT_KEYS:
        dyn[k] = {0: "batch"}
    for k in ("relevance", "intent", "lead", "modes", "mode_probs"):
        dyn[k] = {0: "batch", 1: "agents"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        torch.onnx.export(graph, args, str(path), opset_version=opset, input_names=list(GRAPH_INPUTS),
                          output_names=list(OUTPUT_KEYS), dynamic_axes=dyn, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(str(path)))
    drop_weight_identities(path)
    return path


def drop_weight_identities(path: Path) -> int:
    """Rewire every consumer of an ``Identity`` on an initializer to the initializer itself and
    drop the Identity (in place). The tracer routes the 2nd and 3rd pass's use of each shared
    trunk weight through one; the quantiser only quantises a MatMul whose weight is an
    initializer, so without this it would leave two of the three passes FP32. Returns the count."""
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name for i in g.initializer}
    outputs = {o.name for o in g.output}
    alias = {n.output[0]: n.input[0] for n in g.node
             if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs}
    if not alias:
        return 0
    keep = [n for n in g.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for n in keep:
        for i, name in enumerate(n.input):
            if name in alias:
                n.input[i] = alias[name]
    del g.node[:]
    g.node.extend(keep)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(alias)


def save_embeddings(merged, path: Path, dtype: str = "float16") -> Path:
    """The trunk's word-embedding table (vocab, 384) as .npy (the lookup outside the graph)."""
    from tps_planner.vlm.trunk import base_bert

    table = base_bert(merged.trunk).embeddings.word_embeddings.weight.detach().float().cpu().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, table.astype(dtype))
    return path


INT8_SCOPES = ("trunk", "all")
INT8_EXCLUDE_DEFAULT = ""


def weight_nodes(onnx_path: Path) -> tuple[list[str], list[str]]:
    """(trunk, other) names of the MatMul/Gemm nodes with a weight initializer: the BERT encoder's
    (all three passes) and the input encoders' / heads' / stage embeddings'."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and any(i in inits for i in n.input)]
    trunk = [n.name for n in nodes if "/trunk/" in n.name or "/encoder/" in n.name]
    return trunk, [n.name for n in nodes if n.name not in set(trunk)]


def quantize_int8(onnx_path: Path, out_path: Path, per_channel: bool = True, scope: str = "all",
                  exclude: str = "") -> Path:
    """ORT dynamic INT8: int8 weights (per output channel, or one scale per tensor), activations
    quantised per call (no calibration data); the attention score/value MatMuls (no weight) stay
    FP32. ``scope`` ``all``: every MatMul/Gemm with a weight; ``trunk``: the encoder's only (36
    weight MatMuls x 3 passes, the bulk of the compute), the input encoders, heads and stage
    embeddings FP32 (2.4M parameters) -- no more accurate on the trained planner (trajectory vs
    FP32 on 80 VAL frames: 0.161 m trunk vs 0.151 m all; 14.1 vs 11.9 ms), so ``all`` is the
    default. Keeping the FFN output MatMuls FP32 cut that to 0.101 m but cost 21.4 ms; the
    task-level L2 to the expert moved by <= 0.01 m in every variant. ``exclude``: a regular
    expression; weight nodes whose name matches it stay FP32 too."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if scope not in INT8_SCOPES:
        raise ValueError(f"INT8 scope must be one of {INT8_SCOPES}, got {scope!r}")
    trunk, other = weight_nodes(onnx_path)
    keep_fp32 = list(other) if scope == "trunk" else []
    if exclude:
        pattern = re.compile(exclude)
        keep_fp32 += [n for n in trunk + other if pattern.search(n) and n not in keep_fp32]
    quantize_dynamic(str(onnx_path), str(out_path), per_channel=per_channel, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=keep_fp32,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return Path(out_path)


# --- the export ---------------------------------------------------------------------------------
def _entry(path: Path, made_by: str, notes: str = "", **extra) -> dict:
    from tps_inference.manifest import sha256_file

    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, "made_by": made_by,
            "notes": notes, **extra}


def export_all(checkpoint: Path, out: Path, *, per_tensor: bool = True, embeddings_dtype: str = "float16",
               made_by: str = "", int8_scope: str = "all", int8_exclude: str = INT8_EXCLUDE_DEFAULT) -> dict:
    """Export ``checkpoint`` into ``out``: FP32 graph, INT8 per-channel (+ per-tensor), the word
    embeddings and the manifest (without parity). Returns the manifest."""
    from tps_inference.manifest import sha256_file
    from tps_planner.vlm.model import load_planner
    from tps_planner.vlm.runtime import EXPORT_FORMAT, EXPORT_MANIFEST, OUTPUT_KEYS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    made_by = made_by or command_line()
    t0 = time.time()
    model, ckpt = load_planner(checkpoint)
    merged = merged_copy(model)
    lora = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
    fp32 = export_onnx(merged, out / FILES["fp32"])
    emb = save_embeddings(merged, out / FILES["embeddings"], embeddings_dtype)
    files = {"fp32": _entry(fp32, made_by, f"ONNX opset {OPSET}, all three stages, LoRA merged ({lora} adapter "
                                           "tensors), dynamic batch/agents")}
    what = "every MatMul/Gemm with a weight" if int8_scope == "all" else "the trunk's MatMuls (heads FP32)"
    if int8_exclude:
        what += f" except nodes matching {int8_exclude!r}"
    int8 = quantize_int8(fp32, out / FILES["int8"], per_channel=True, scope=int8_scope, exclude=int8_exclude)
    files["int8"] = _entry(int8, made_by, f"ORT dynamic INT8, per-channel int8 weights of {what}")
    if per_tensor:
        pt = quantize_int8(fp32, out / FILES["int8_per_tensor"], per_channel=False, scope=int8_scope,
                           exclude=int8_exclude)
        files["int8_per_tensor"] = _entry(pt, made_by, f"ORT dynamic INT8, per-tensor int8 weights of {what} "
                                                       "(comparison only)")
    cfg = merged.cfg
    summary = ckpt.get("summary", {}) or {}
    man = {
        "format": EXPORT_FORMAT,
        "model": "vlm_planner",
        "made_by": made_by,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "export_s": round(time.time() - t0, 1),
        "source": {"file": str(Path(checkpoint).resolve()), "sha256": sha256_file(checkpoint)},
        "config": cfg.to_dict(),
        "summary": {k: summary[k] for k in ("command", "steps", "epochs", "wall_s", "train_samples", "val_samples")
                    if k in summary} | ({"val_last": summary["val"][-1]} if summary.get("val") else {}),
        "inputs": {k: _input_spec(k, cfg) for k in GRAPH_INPUTS},
        "outputs": list(OUTPUT_KEYS),
        "embeddings": _entry(emb, made_by, "trunk word embeddings (frozen); lookup = table[ids] outside the graph",
                             dtype=embeddings_dtype, shape=list(np.load(emb, mmap_mode="r").shape)),
        "files": files,
    }
    write_manifest(out / EXPORT_MANIFEST, man)
    return man


def _input_spec(name: str, cfg) -> dict:
    from tps_planner.vlm.layout import AGENT_DIM

    w, h = cfg.camera_size
    spec = {"text_embeds": ("float32", ["batch", cfg.max_text_tokens, cfg.d_model]),
            "text_mask": ("bool", ["batch", cfg.max_text_tokens]),
            "camera": ("float32", ["batch", 3, h, w]), "camera_valid": ("bool", ["batch"]),
            "ego": ("float32", ["batch", cfg.ego_dim]), "agent_codes": ("int64", ["batch", "agents"]),
            "agent_feats": ("float32", ["batch", "agents", AGENT_DIM]), "agent_mask": ("bool", ["batch", "agents"])}
    dtype, shape = spec[name]
    return {"dtype": dtype, "shape": shape}


def write_manifest(path: Path, man: dict) -> Path:
    tmp = Path(path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(man, indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    return Path(path)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def command_line() -> str:
    return "python -m export.planner " + shlex.join(sys.argv[1:])


# --- VAL frames ---------------------------------------------------------------------------------
def shard_frames(path: Path, cfg, max_frames: int = 0) -> tuple[list[dict], list[str], np.ndarray, np.ndarray]:
    """(frames of :func:`tps_planner.vlm.inputs.frame_inputs`, instruction texts, expert plans (N,
    P, 2), plan valid (N, P)) of one planner shard. TEST seeds are refused."""
    from tps_planner.vlm.inputs import frame_inputs
    from tps_sim.splits import split_of

    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    meta = json.loads(str(d["meta_json"]))
    split = split_of(int(meta["seed"]))
    if split not in ("train", "val"):
        raise ValueError(f"{path}: seed {meta['seed']} is a {split.upper()} seed; export parity reads TRAIN/VAL only")
    n = len(d["t_s"])
    idx = np.arange(n) if not max_frames or max_frames >= n else \
        np.unique(np.linspace(0, n - 1, max_frames).round().astype(int))
    target = float(meta["instruction"].get("target_speed_mps", -1.0))
    frames = []
    for i in idx:
        m = d["tok_mask"][i]
        stop = float(d["stop_line_m"][i])
        frames.append(frame_inputs(
            cfg, speed_mps=float(d["ego_speed"][i]), accel_mps2=float(d["ego_accel"][i]),
            yaw_rate_rps=float(d["ego_yaw_rate"][i]), route_xy=d["route"], pose=d["ego_pose"][i],
            stop_line_m=stop if np.isfinite(stop) else None, target_speed_mps=target,
            tok_code=d["tok_code"][i][m], tok_geom=d["tok_geom"][i][m], tok_qerr=d["tok_qerr"][i][m],
            tok_id=d["tok_id"][i][m].astype(np.int64), image=d["image"][i]))
    texts = [str(meta["instruction"]["text"])] * len(idx)
    return frames, texts, d["plan"][idx].astype(np.float32), d["plan_valid"][idx].astype(bool)


def val_shards(root: Path, limit: int = 0) -> list[Path]:
    paths = sorted((Path(root) / "val").glob("*/seed*.npz"))
    if limit and len(paths) > limit:
        pick = np.unique(np.linspace(0, len(paths) - 1, limit).round().astype(int))
        paths = [paths[i] for i in pick]
    return paths


# --- parity -------------------------------------------------------------------------------------
def task_l2(traj: np.ndarray, plan: np.ndarray, valid: np.ndarray, dt: float) -> dict:
    """Mean L2 [m] of planned vs expert positions at 1, 2 and 3 s (at-t, valid points) and their mean."""
    err = np.linalg.norm(traj - plan, axis=-1)
    res = {}
    for s in (1, 2, 3):
        k = int(round(s / dt)) - 1
        ok = valid[:, k]
        res[f"l2_{s}s"] = float(err[ok, k].mean()) if ok.any() else float("nan")
    res["l2_mean"] = float(np.mean([res["l2_1s"], res["l2_2s"], res["l2_3s"]]))
    return res


def compare_outputs(ref: list[dict], other: list[dict]) -> dict:
    """``other`` vs ``ref`` (per-frame output dicts): trajectory L2 difference (mean over frames
    and points, max) [m], forecast L2 difference of real agents [m], max abs difference per output."""
    from tps_planner.vlm.runtime import OUTPUT_KEYS

    d_traj = np.concatenate([np.linalg.norm(o["trajectory"] - r["trajectory"], axis=-1).ravel()
                             for r, o in zip(ref, other, strict=True)])
    d_fc = [np.linalg.norm(o["modes"] - r["modes"], axis=-1).ravel() for r, o in zip(ref, other, strict=True)]
    d_fc = np.concatenate(d_fc) if d_fc else np.zeros(0)
    row = {"traj_l2_mean": float(d_traj.mean()), "traj_l2_max": float(d_traj.max()),
           "forecast_l2_mean": float(d_fc.mean()) if d_fc.size else None}
    for k in OUTPUT_KEYS:
        row[f"{k}_max_abs"] = float(max(np.abs(o[k] - r[k]).max() for r, o in zip(ref, other, strict=True)))
    return row


def parity(runtimes: dict, frames: list[dict], texts: list[str], plans: np.ndarray | None = None,
           valid: np.ndarray | None = None, dt: float = 0.5) -> dict:
    """Rows per backend (the first is the reference, torch): its differences to the reference and
    (with expert plans) its own task-level L2 to the expert, one frame per call (batch 1, as on the
    vehicle)."""
    from tps_planner.vlm.inputs import stack_frames

    outs = {}
    for name, rt in runtimes.items():
        outs[name] = [rt.run(stack_frames([f]), [t]) for f, t in zip(frames, texts, strict=True)]
    names = list(runtimes)
    ref = names[0]
    rows = {}
    for name in names:
        row = {"frames": len(frames)}
        if name != ref:
            row.update(compare_outputs(outs[ref], outs[name]))
        if plans is not None:
            traj = np.stack([o["trajectory"][0] for o in outs[name]])
            row.update(task_l2(traj, plans, valid, dt))
        rows[name] = row
    if plans is not None:
        for name in names[1:]:
            rows[name]["l2_mean_diff_vs_torch"] = rows[name]["l2_mean"] - rows[ref]["l2_mean"]
        if "onnxruntime" in rows:
            for name in names:
                if name.startswith("onnxruntime-int8"):
                    rows[name]["l2_mean_diff_vs_fp32"] = rows[name]["l2_mean"] - rows["onnxruntime"]["l2_mean"]
                    rows[name]["traj_l2_mean_vs_fp32"] = compare_outputs(outs["onnxruntime"], outs[name])["traj_l2_mean"]
    return rows


PARITY_COLS = ("frames", "traj_l2_mean", "traj_l2_max", "forecast_l2_mean", "trajectory_max_abs", "modes_max_abs",
               "intent_max_abs", "light_max_abs", "l2_1s", "l2_2s", "l2_3s", "l2_mean", "l2_mean_diff_vs_fp32",
               "traj_l2_mean_vs_fp32")


def parity_markdown(rows: dict, source: str) -> str:
    def f(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"
        return str(v)

    lines = [f"# Planner export parity vs torch FP32 ({source})", "",
             "traj/forecast/*_max_abs: each backend's outputs vs torch eager, one frame per call; l2_*: the "
             "backend's own plan vs the expert plan (at-t, m); *_vs_fp32: INT8 vs ORT FP32.", "",
             "| backend | " + " | ".join(PARITY_COLS) + " |", "|---" * (len(PARITY_COLS) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f(r.get(c)) for c in PARITY_COLS) + " |")
    return "\n".join(lines) + "\n"


# --- TensorRT -------------------------------------------------------------------------------------
def build_tensorrt(out: Path, man: dict, calib_inputs: list[dict], engine_cache: Path) -> dict:
    """TensorRT FP16 and INT8 (entropy calibration on ``calib_inputs``, cache saved in ``out``)
    engines of the FP32 graph through ``tps_inference.engine_cache``. Returns rows (``skipped``
    with the reason where TensorRT or a GPU is missing)."""
    from tps_inference.device import cuda_status, tensorrt_status
    from tps_planner.vlm.layout import PlannerConfig
    from tps_planner.vlm.runtime import tensorrt_shapes

    from export.models import tensorrt_engine

    trt_ok, trt_why = tensorrt_status()
    cuda_ok, cuda_why = cuda_status()
    if not (trt_ok and cuda_ok):
        why = "; ".join(w for w, ok in ((trt_why, trt_ok), (cuda_why, cuda_ok)) if not ok)
        return {f"tensorrt-{p}": {"skipped": f"needs TensorRT and an NVIDIA GPU: {why}"} for p in ("fp16", "int8")}
    cfg = PlannerConfig.from_dict(man["config"])
    shapes = tensorrt_shapes(cfg)
    fp32 = out / man["files"]["fp32"]["file"]
    rows = {}
    for prec in ("fp16", "int8"):
        calib = out / "planner.trt_int8.calib" if prec == "int8" else None
        try:
            eng = tensorrt_engine(fp32, prec, engine_cache, shapes, calibration_cache=calib,
                                  calibration_batches=calib_inputs if prec == "int8" else None)
            rows[f"tensorrt-{prec}"] = {"engine": str(eng)}
            if calib is not None and calib.exists():
                man["files"]["trt_int8_calib"] = _entry(calib, man["made_by"],
                                                        f"TensorRT entropy calibration on {len(calib_inputs)} TRAIN frames")
        except Exception as exc:  # noqa: BLE001 - a failed build is reported, the export goes on
            rows[f"tensorrt-{prec}"] = {"skipped": f"build failed: {type(exc).__name__}: {exc}"}
    return rows


def calibration_inputs(data_root: Path, cfg, table: np.ndarray, n: int) -> list[dict]:
    """Graph inputs of ``n`` frames spread over the TRAIN shards (TensorRT INT8), at the
    optimisation profile's opt shape (batch 1, its agent count: TensorRT calibrates at kOPT), the
    agent slots padded or cut (nearest first) to it."""
    from tps_planner.vlm.inputs import stack_frames
    from tps_planner.vlm.runtime import AGENT_KEYS, graph_inputs, tensorrt_shapes
    from tps_planner.vlm.trunk import load_tokenizer

    opt_a = tensorrt_shapes(cfg)["agent_codes"][1][1]

    tok = load_tokenizer()
    paths = sorted((Path(data_root) / "train").glob("*/seed*.npz"))
    if not paths:
        return []
    per = max(1, n // len(paths) + 1)
    res = []
    for p in paths:
        frames, texts, _, _ = shard_frames(p, cfg, per)
        for f, t in zip(frames, texts, strict=True):
            enc = tok([t], padding="max_length", max_length=cfg.max_text_tokens, truncation=True, return_tensors="np")
            batch = {k: (v[:, :opt_a] if k in AGENT_KEYS else v) for k, v in stack_frames([f]).items()}
            res.append(graph_inputs(batch, enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(bool),
                                    table))
            if len(res) >= n:
                return res
    return res


# --- parity runs ------------------------------------------------------------------------------------
def export_runtimes(out: Path, checkpoint: Path, threads: int, extra: dict | None = None) -> dict:
    """{row name: PlannerRuntime}: torch (the reference, first), ORT FP32, ORT INT8 per-channel and
    per-tensor (where exported), then ``extra`` (e.g. TensorRT)."""
    from tps_planner.vlm.runtime import PlannerRuntime

    runtimes = {"torch": PlannerRuntime(checkpoint, "torch", threads)}
    runtimes["onnxruntime"] = PlannerRuntime(out, "onnxruntime", threads)
    runtimes["onnxruntime-int8"] = PlannerRuntime(out, "onnxruntime-int8", threads)
    if "int8_per_tensor" in runtimes["onnxruntime"].manifest["files"]:
        runtimes["onnxruntime-int8-per-tensor"] = PlannerRuntime(out, "onnxruntime-int8", threads,
                                                                 graph="int8_per_tensor")
    runtimes.update(extra or {})
    return runtimes


def parity_frames(data_root: Path, cfg, shards: int = 0, frames_per_shard: int = 0):
    """(frames, texts, expert plans, plan valid, source) of VAL shards; synthetic frames (plans None)
    when there are none."""
    paths = val_shards(data_root, shards)
    if paths:
        frames, texts, plans, valid = [], [], [], []
        for p in paths:
            f, t, pl, v = shard_frames(p, cfg, frames_per_shard)
            frames += f
            texts += t
            plans.append(pl)
            valid.append(v)
        seeds = sorted({p.stem for p in paths})
        source = (f"{len(frames)} frames of {len(paths)} VAL shards under {data_root}/val "
                  f"({', '.join(sorted({p.parent.name for p in paths}))}; {', '.join(seeds)})")
        return frames, texts, np.concatenate(plans), np.concatenate(valid), source
    from tps_planner.vlm.inputs import frame_inputs

    rng = np.random.default_rng(0)
    frames, texts = [], []
    for k in range(8):
        n = int(rng.integers(0, cfg.max_agents + 1))
        geom = rng.normal(0, 15, (n, 7))
        geom[:, 3:5] = np.abs(geom[:, 3:5]) + 1.0
        frames.append(frame_inputs(cfg, speed_mps=8.0, accel_mps2=0.0, yaw_rate_rps=0.0,
                                   route_xy=np.array([[0.0, 0.0], [200.0, 0.0]]), pose=np.zeros(3),
                                   stop_line_m=None, target_speed_mps=-1.0,
                                   tok_code=rng.integers(0, cfg.codebook_size, n), tok_geom=geom,
                                   tok_qerr=np.abs(rng.normal(0, 1, n)),
                                   image=rng.integers(0, 255, (cfg.camera_size[1], cfg.camera_size[0], 3),
                                                      dtype=np.uint8)))
        texts.append(["keep lane", "change lane left", "take the second exit", "stop"][k % 4])
    return frames, texts, None, None, f"{len(frames)} synthetic frames (no VAL shards under {data_root}/val; no task L2)"


def run_parity(out: Path, checkpoint: Path, data_root: Path, shards: int, frames_per_shard: int,
               threads: int, extra: dict | None = None) -> tuple[dict, str]:
    """Parity of every exported graph (+ ``extra`` runtimes) vs torch on VAL frames (or synthetic
    inputs when there are no VAL shards)."""
    runtimes = export_runtimes(out, checkpoint, threads, extra)
    cfg = runtimes["torch"].cfg
    frames, texts, plans, valid, source = parity_frames(data_root, cfg, shards, frames_per_shard)
    rows = parity(runtimes, frames, texts, plans, valid, cfg.plan_dt_s)
    return rows, source


# --- CLI ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from tps_planner.vlm.runtime import EXPORT_MANIFEST

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="planner.pt (default models/planner/planner.pt, else the newest runs/planner/*/planner.pt)")
    ap.add_argument("--out", type=Path, default=None,
                    help="export folder (default build/export/<checkpoint stem>: build/export/planner for planner.pt, "
                         "where PlannerRuntime looks when given the checkpoint)")
    ap.add_argument("--data", type=Path, default=REPO / "data" / "planner", help="planner shards (VAL for parity)")
    ap.add_argument("--parity-shards", type=int, default=0, help="VAL shards for parity (0 = all)")
    ap.add_argument("--parity-frames", type=int, default=0, help="frames per VAL shard (0 = all)")
    ap.add_argument("--no-parity", action="store_true")
    ap.add_argument("--no-per-tensor", action="store_true", help="skip the per-tensor INT8 comparison graph")
    ap.add_argument("--embeddings-dtype", choices=("float16", "float32"), default="float16")
    ap.add_argument("--int8-scope", choices=INT8_SCOPES, default="all", help="which weights INT8 quantises")
    ap.add_argument("--int8-exclude", default=INT8_EXCLUDE_DEFAULT,
                    help="regex of weight-node names kept FP32 in the INT8 graphs ('' = none)")
    ap.add_argument("--tensorrt", action="store_true", help="also build TensorRT FP16/INT8 engines (GPU + TensorRT)")
    ap.add_argument("--engine-cache", type=Path, default=None, help="TensorRT engines (default <out>/engines)")
    ap.add_argument("--calib-frames", type=int, default=64, help="TRAIN frames for TensorRT INT8 calibration")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        ckpt = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    except FileNotFoundError as exc:
        print(f"export.planner: error: {exc}", file=sys.stderr)
        return 2
    if not ckpt.is_file():
        print(f"export.planner: error: checkpoint {ckpt} not found", file=sys.stderr)
        return 2
    if args.out is None:
        from tps_planner.vlm.runtime import default_export_dir

        args.out = default_export_dir(ckpt.stem)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.time()
    print(f"export.planner: {ckpt} -> {args.out}")
    man = export_all(ckpt, args.out, per_tensor=not args.no_per_tensor, embeddings_dtype=args.embeddings_dtype,
                     int8_scope=args.int8_scope, int8_exclude=args.int8_exclude)
    for k, e in man["files"].items():
        print(f"  {k}: {e['file']} {e['bytes'] / 1e6:.1f} MB sha256 {e['sha256'][:12]}...")
    print(f"  embeddings: {man['embeddings']['file']} {man['embeddings']['bytes'] / 1e6:.1f} MB")
    if args.tensorrt:
        from tps_planner.vlm.layout import PlannerConfig
        from tps_planner.vlm.runtime import load_embeddings

        cfg = PlannerConfig.from_dict(man["config"])
        table = load_embeddings(args.out, man["embeddings"], cfg.d_model)
        calib = calibration_inputs(args.data, cfg, table, args.calib_frames)
        man["tensorrt"] = build_tensorrt(args.out, man, calib, args.engine_cache or args.out / "engines")
        print(json.dumps(man["tensorrt"], indent=1))
        write_manifest(args.out / EXPORT_MANIFEST, man)
    if not args.no_parity:
        rows, source = run_parity(args.out, ckpt, args.data, args.parity_shards, args.parity_frames, args.threads)
        md = parity_markdown(rows, source)
        print(md)
        man["parity"] = {"source": source, "rows": rows}
        for key, row in (("fp32", "onnxruntime"), ("int8", "onnxruntime-int8"),
                         ("int8_per_tensor", "onnxruntime-int8-per-tensor")):
            if key in man["files"] and row in rows:
                man["files"][key]["metrics"] = {k: v for k, v in rows[row].items()
                                                if k in ("traj_l2_mean", "traj_l2_max", "l2_mean",
                                                         "l2_mean_diff_vs_fp32", "traj_l2_mean_vs_fp32")}
        write_manifest(args.out / EXPORT_MANIFEST, man)
        (args.out / "parity.json").write_text(json.dumps(man["parity"], indent=2, default=_json_default) + "\n")
        (args.out / "parity.md").write_text(md)
    print(f"export.planner: done in {time.time() - t0:.0f} s; manifest {args.out / EXPORT_MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
