"""Planner samples of one simulated expert episode (numpy arrays in memory): what the planner's
dataset builder (``python -m training.planner_data``) writes as a shard and what the open-loop
evaluation (``tps-eval openloop``) scores, built one way.

An episode is simulated with :func:`tps_sim.dataset.episode_arrays` (the expert drives; nothing of
the simulator or the scenario library changes) at the lidar's 10 Hz (``frame_stride`` 1) with the
front camera rendered and area-downscaled on every ``sample_every``-th frame. Every frame runs, in
time order, through the **frozen** onboard detector + tracker + tokenizer
(:class:`tps_perception.tokenizer.PerceptionTokenizer`, :func:`make_core`), so the planner reads
the agent tokens it will see on the vehicle, never ground-truth boxes. A *sample* is every
``sample_every``-th frame (2 Hz by default) that has an image. ``extra_tokens`` (e.g. the
untargeted tokenizer, :func:`make_token_backend`) tokenizes the same published boxes on the same
detector features a second way in the same pass (keys ``tok_code_<name>``, ``tok_qerr_<name>``:
the tokenizer ablation's tokens of the very same frames, at the cost of one token pass).

Splits are the caller's business: the dataset builder refuses TEST seeds (nothing held out is
stored); the evaluation builds TEST episodes in memory and never writes them.

Labels per sample come from the simulator's ground truth: each token is matched to a ground-truth
agent (greedy by score, centre distance <= 2 m, :func:`tps_eval.tokenizer.samples.match_to_gt`;
parked cars -- static clutter in the simulator -- are ground truth too, standing still); a matched
token gets the agent's future (3 s at 0.5 s), its intent and relevance
(:mod:`tps_planner.vlm.labels`); unmatched tokens (false positives) get none. The expert's plan is
the ego's own poses at +0.5 .. +4.0 s (base_link of the sample).

Sample / shard keys (N samples, A = ``max_agents`` token slots, nearest first; G ground-truth slots)
=================================================================================================
==================  ====================  ===================================================
key                 shape / dtype         meaning
==================  ====================  ===================================================
meta_json           str                   scenario, seed, split, instruction {text, command,
                                          exit_number, target_speed_mps}, backend, detector and
                                          tokenizer sha256, image_size, sample_every,
                                          format_version
t_s                 (N,) float64          sim time [s]
frame               (N,) int32            frame index in the episode (10 Hz)
image               (N, H, W, 3) uint8    front camera, downscaled
ego_pose            (N, 3) float64        map x, y, yaw of base_link
ego_speed           (N,) float32          [m/s]
ego_accel           (N,) float32          [m/s^2]
ego_yaw_rate        (N,) float32          [rad/s] (pose difference over one 0.1 s step)
stop_line_m         (N,) float32          distance to the governing light's stop line [m]; NaN
                                          = none within range
light               (N,) int8             governing light (tps_planner.vlm.layout.LIGHTS)
route               (R, 2) float64        the ego route polyline, map [m]
tok_id              (N, A) uint32         AgentToken.agent_id (track id)
tok_code            (N, A) int32          VQ code
tok_geom            (N, A, 7) float32     x, y, yaw, length, width, vx, vy (base_link)
tok_qerr            (N, A) float32        quantisation error
tok_mask            (N, A) bool           slot holds a token
tok_gt              (N, A) int32          matched ground-truth slot, -1 = none (false positive)
fut                 (N, A, 6, 2) float32  matched agent's future centres, base_link [m]
fut_valid           (N, A, 6) bool
intent              (N, A) int8           layout.INTENTS index, -1 = no label
relevance           (N, A) bool
lead                (N,) int16            token slot of the lead agent; -2 = no lead; -1 = the
                                          lead exists but no token matched it (ignored)
plan                (N, 8, 2) float32     expert positions at +0.5 .. +4.0 s, base_link [m]
plan_valid          (N, 8) bool           inside the episode
gt_box              (N, G, 9) float32     ground truth x, y, z, l, w, h, yaw, vx, vy
gt_class            (N, G) uint8
gt_future           (N, G, 6, 2) float32  (for open-loop collision checks)
gt_future_valid     (N, G, 6) bool
gt_mask             (N, G) bool
tok_code_<name>     (N, A) int32          only with ``extra_tokens``: the same slots' codes
tok_qerr_<name>     (N, A) float32        from that token backend (not in shards)
==================  ====================  ===================================================
"""

from __future__ import annotations

import json

import numpy as np
from tps_inference.manifest import sha256_file

FORMAT_VERSION = 1
PLAN_STEPS = 8
PLAN_DT_S = 0.5
FUTURE_STEPS = 6
DEFAULT_IMAGE_SIZE = (160, 90)
DEFAULT_MAX_AGENTS = 64
DEFAULT_MAX_GT = 96
PARKED_ID_BASE = 1_000_000   # tps_eval.detector.data.PARKED_ID_BASE



def make_core(backend: str = "onnxruntime-int8", threads: int = 2, variant: str = "targeted"):
    """The frozen onboard detector + tracker + tokenizer (``variant`` targeted, or untargeted for
    the tokenizer ablation), and a description of it."""
    from tps_perception.backends import default_model_dir, load_meta
    from tps_perception.tokenizer import PerceptionTokenizer, TokenizerParams
    from tps_perception.tokenizer_backends import (
        default_tokenizer_dir,
        load_tokenizer_meta,
        make_feature_backend,
        make_token_backend,
        onnx_name,
        weights_name,
    )

    det_dir, tok_dir = default_model_dir(), default_tokenizer_dir()
    det_meta, tok_meta = load_meta(det_dir), load_tokenizer_meta(tok_dir)
    core = PerceptionTokenizer(TokenizerParams.from_meta(det_meta, tok_meta),
                               make_feature_backend(backend, det_dir, threads),
                               make_token_backend(backend, variant, tok_dir, threads))
    if backend == "torch":
        det_file, tok_file = det_dir / "detector.pt", tok_dir / weights_name(variant)
    else:
        int8 = backend == "onnxruntime-int8"
        det_file = det_dir / ("detector_int8.onnx" if int8 else "detector.onnx")
        tok_file = tok_dir / onnx_name(variant, int8)
    info = {"backend": backend, "tokenizer_variant": variant, "detector_file": det_file.name, "detector_sha256": sha256_file(det_file),
            "tokenizer_file": tok_file.name, "tokenizer_sha256": sha256_file(tok_file),
            "codebook_size": int(tok_meta["config"]["codebook_size"])}
    return core, info


def make_token_backend(backend: str = "onnxruntime-int8", variant: str = "untargeted", threads: int = 2):
    """A second token backend (default the untargeted tokenizer) for ``extra_tokens`` of
    :func:`episode_samples`, and a description of it."""
    from tps_perception import tokenizer_backends as tb

    tok_dir = tb.default_tokenizer_dir()
    fn = tb.make_token_backend(backend, variant, tok_dir, threads)
    f = tok_dir / (tb.weights_name(variant) if backend == "torch"
                   else tb.onnx_name(variant, backend == "onnxruntime-int8"))
    return fn, {"tokenizer_variant": variant, "tokenizer_file": f.name, "tokenizer_sha256": sha256_file(f)}


def expert_plan(poses: np.ndarray, i: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(PLAN_STEPS, 2) expert positions at +stride, +2 stride, ... frames in base_link of frame i,
    and their validity."""
    from tps_common.geometry import to_local

    plan = np.zeros((PLAN_STEPS, 2), np.float32)
    valid = np.zeros(PLAN_STEPS, bool)
    for k in range(PLAN_STEPS):
        j = i + (k + 1) * stride
        if j >= len(poses):
            break
        plan[k] = to_local(poses[j, :2][None], poses[i, :2], poses[i, 2])[0]
        valid[k] = True
    return plan, valid


def _parked_gt(statics: np.ndarray, pose: np.ndarray, points: np.ndarray, lidar_h: float):
    from tps_eval.detector.data import parked_car_boxes

    boxes, ids, _ = parked_car_boxes(statics, pose, points, lidar_h)
    return boxes, ids


def episode_samples(arrays: dict, core, sample_every: int, max_agents: int, max_gt: int,
                    progress=None, extra_tokens: dict | None = None) -> dict:
    """The sample arrays of one simulated episode (``arrays``: :func:`tps_sim.dataset.episode_arrays`
    output at frame stride 1).

    Args:
        core: the frozen detector + tracker + tokenizer (:func:`make_core`).
        extra_tokens: ``{name: token backend}`` run on the same detector features and published
            boxes as ``core``'s tokenizer (keys ``tok_code_<name>``, ``tok_qerr_<name>``).
        progress: a tqdm-like object updated once per 0.1 s frame.

    Raises:
        ValueError: not every frame simulated, or no sample frame with an image.
    """
    from tps_common.geometry import wrap_angle
    from tps_planner.vlm.labels import governing_light, intent_label, lead_index, relevance_labels
    from tps_sim.dataset import Episode

    from tps_eval.tokenizer.samples import match_to_gt

    ep = Episode(arrays)
    meta = ep.meta
    if int(meta["frame_stride"]) != 1:
        raise ValueError(f"the planner dataset needs every 0.1 s frame (frame_stride 1), got {meta['frame_stride']}")
    stride = int(round(PLAN_DT_S / float(meta["dt_s"])))
    poses = np.asarray(arrays["ego_pose"], np.float64)
    lidar_h = float(meta.get("lidar_height_m", 1.8))
    statics = arrays["static_boxes"]
    cls_unknown = -1
    rows: dict[str, list] = {k: [] for k in (
        "t_s", "frame", "image", "ego_pose", "ego_speed", "ego_accel", "ego_yaw_rate", "stop_line_m", "light",
        "tok_id", "tok_code", "tok_geom", "tok_qerr", "tok_mask", "tok_gt", "fut", "fut_valid", "intent",
        "relevance", "lead", "plan", "plan_valid", "gt_box", "gt_class", "gt_future", "gt_future_valid",
        "gt_mask")}
    extra = dict(extra_tokens or {})
    for name in extra:
        rows[f"tok_code_{name}"], rows[f"tok_qerr_{name}"] = [], []
    on_route = arrays["light_on_route"] if "light_on_route" in arrays else np.zeros(0, bool)
    core.reset()
    for i in range(len(ep)):
        pts = ep.points(i)
        res = core.run(pts, float(arrays["t_s"][i]), poses[i])
        if progress is not None:
            progress.update(1)
        img = ep.image(i)
        if i % sample_every or img is None:
            continue
        gt = ep.gt(i)
        g_box, g_cls, g_fut, g_val = gt.boxes, gt.classes, gt.future, gt.future_valid
        pb, _ = _parked_gt(statics, poses[i], pts, lidar_h)
        if len(pb):
            g_box = np.concatenate([g_box, pb.astype(np.float32)])
            g_cls = np.concatenate([g_cls, np.ones(len(pb), np.uint8)])
            g_fut = np.concatenate([g_fut, np.repeat(pb[:, None, :2], FUTURE_STEPS, 1).astype(np.float32)])
            g_val = np.concatenate([g_val, np.ones((len(pb), FUTURE_STEPS), bool)])
        plan, plan_valid = expert_plan(poses, i, stride)
        ego_fut = np.asarray(arrays["ego_future"][i], np.float32)
        lead_gt = lead_index(g_box, plan[plan_valid])
        rel_gt = relevance_labels(g_box, g_fut, g_val, ego_fut[:, :2], arrays["ego_future_valid"][i], lead_gt)
        tok = res.tokens
        sel = np.argsort(np.hypot(tok.geometry[:, 0], tok.geometry[:, 1]), kind="stable")[:max_agents]
        n = len(sel)
        match = np.full(n, -1, np.int32)
        if n and len(g_box):
            scores = res.detections.scores[sel] if len(res.detections) == len(tok) else np.ones(n, np.float32)
            match = match_to_gt(tok.geometry[sel][:, :2], np.asarray(scores, np.float32), g_box[:, :2])
        a = max_agents
        t_id, t_code, t_geom = np.zeros(a, np.uint32), np.zeros(a, np.int32), np.zeros((a, 7), np.float32)
        t_qerr, t_mask, t_gt = np.zeros(a, np.float32), np.zeros(a, bool), np.full(a, -1, np.int32)
        fut, fut_valid = np.zeros((a, FUTURE_STEPS, 2), np.float32), np.zeros((a, FUTURE_STEPS), bool)
        intent, rel = np.full(a, cls_unknown, np.int8), np.zeros(a, bool)
        t_id[:n], t_code[:n], t_geom[:n] = tok.agent_ids[sel], tok.codes[sel], tok.geometry[sel]
        t_qerr[:n], t_mask[:n], t_gt[:n] = tok.qerr[sel], True, match
        extra_vals = {}
        for name, backend in extra.items():
            e_code, e_qerr = np.zeros(a, np.int32), np.zeros(a, np.float32)
            if len(tok):
                codes, qerr, _, _ = backend(core.last_features, np.asarray(res.detections.boxes, np.float32)[:, :7],
                                            np.asarray(res.velocities, np.float32).reshape(-1, 2))
                e_code[:n], e_qerr[:n] = np.asarray(codes)[sel], np.asarray(qerr)[sel]
            extra_vals[f"tok_code_{name}"], extra_vals[f"tok_qerr_{name}"] = e_code, e_qerr
        for k in np.nonzero(match >= 0)[0]:
            j = int(match[k])
            fut[k], fut_valid[k] = g_fut[j], g_val[j]
            intent[k] = intent_label(g_box[j], int(g_cls[j]), g_fut[j], g_val[j])
            rel[k] = rel_gt[j]
        if lead_gt < 0:
            lead = -2
        else:
            hit = np.nonzero(match == lead_gt)[0]
            lead = int(hit[0]) if len(hit) else -1
        light, stop = governing_light(arrays["light_state"][i] if "light_state" in arrays else np.zeros(0),
                                      arrays["light_stop_base"][i] if "light_stop_base" in arrays else np.zeros((0, 2, 2)),
                                      on_route)
        gm = min(len(g_box), max_gt)
        order = np.argsort(np.hypot(g_box[:, 0], g_box[:, 1]), kind="stable")[:gm]
        gb, gc = np.zeros((max_gt, 9), np.float32), np.zeros(max_gt, np.uint8)
        gf, gv, gmask = np.zeros((max_gt, FUTURE_STEPS, 2), np.float32), np.zeros((max_gt, FUTURE_STEPS), bool), np.zeros(max_gt, bool)
        gb[:gm], gc[:gm], gf[:gm], gv[:gm], gmask[:gm] = g_box[order], g_cls[order], g_fut[order], g_val[order], True
        prev = poses[max(i - 1, 0)]
        dt = float(meta["dt_s"]) if i > 0 else 1.0
        yaw_rate = float(wrap_angle(poses[i, 2] - prev[2])) / dt if i > 0 else 0.0
        vals = {"t_s": float(arrays["t_s"][i]), "frame": i, "image": img, "ego_pose": poses[i],
                "ego_speed": float(arrays["ego_speed"][i]), "ego_accel": float(arrays["ego_accel"][i]),
                "ego_yaw_rate": yaw_rate, "stop_line_m": np.nan if stop is None else stop, "light": light,
                "tok_id": t_id, "tok_code": t_code, "tok_geom": t_geom, "tok_qerr": t_qerr, "tok_mask": t_mask,
                "tok_gt": t_gt, "fut": fut, "fut_valid": fut_valid, "intent": intent, "relevance": rel,
                "lead": lead, "plan": plan, "plan_valid": plan_valid, "gt_box": gb, "gt_class": gc,
                "gt_future": gf, "gt_future_valid": gv, "gt_mask": gmask, **extra_vals}
        for k, v in vals.items():
            rows[k].append(v)
    dtypes = {"t_s": np.float64, "frame": np.int32, "image": np.uint8, "ego_pose": np.float64,
              "ego_speed": np.float32, "ego_accel": np.float32, "ego_yaw_rate": np.float32,
              "stop_line_m": np.float32, "light": np.int8, "lead": np.int16}
    out = {}
    for k, v in rows.items():
        if not v:
            raise ValueError("episode has no sample frames with an image (check sample_every / image_every)")
        out[k] = np.asarray(np.stack([np.asarray(x) for x in v]), dtypes.get(k))
    out["route"] = np.asarray(arrays["route"], np.float64)
    return out




def simulate(scenario: str, seed: int, *, duration_s: float = 20.0, sample_every: int = 5,
             image_size: tuple = DEFAULT_IMAGE_SIZE, **world) -> dict:
    """The raw episode (:func:`tps_sim.dataset.episode_arrays`, every 0.1 s frame, the camera on
    every ``sample_every``-th); ``world``: its clutter, density, adversary, sensor_faults, instruction. Any
    seed: storing is the caller's decision."""
    from tps_sim.dataset import episode_arrays

    return episode_arrays(scenario, seed, duration_s=duration_s, frame_stride=1, image_every=sample_every,
                          image_size=tuple(image_size), **world)


def sample_meta(arrays: dict, scenario: str, seed: int, split: str, core_info: dict, *, duration_s: float,
                sample_every: int, image_size: tuple, max_agents: int, max_gt: int) -> dict:
    """The ``meta_json`` content of an episode's samples (module docstring)."""
    meta = json.loads(str(arrays["meta_json"]))
    return {"scenario": scenario, "seed": int(seed), "split": split, "instruction": meta["instruction"],
            "duration_s": float(duration_s), "dt_s": float(meta["dt_s"]), "sample_every": int(sample_every),
            "image_size": list(image_size), "max_agents": int(max_agents), "max_gt": int(max_gt),
            "clutter": meta["clutter"], "plan_dt_s": PLAN_DT_S, "future_step_s": float(meta["future_step_s"]),
            "adversary": meta.get("adversary", {}), "sensor_faults": meta.get("sensor_faults", {}),
            "instruction_choice": meta.get("instruction_choice", ""), "lane_change": meta.get("lane_change"),
            **core_info, "format_version": FORMAT_VERSION}
