"""Tokenizer evaluation: ``tps-eval tokenizer [--split test | --seeds A:B] [--json PATH]``.

Runs the onboard core (:class:`~tps_perception.tokenizer.PerceptionTokenizer`: detector, tracker,
targeted tokenizer) over every frame of held-out episodes and tokenizes, on the same feature map,
with the **targeted** tokenizer and its **untargeted** ablation side by side (definitions in the
package README, "Tokenizer metrics"):

* agents = detections matched to a real agent (greedy, <= 2 m, within 50 m); as many
  background boxes per frame, placed uniformly at least :data:`BACKGROUND_CLEARANCE_M` away from
  every agent and detection, with agent sizes and uniform headings;
* codebook: perplexity and use of the agent codes; share of the used codes (agents + background)
  assigned more often to agents than to background;
* reconstruction **from the code alone**: each code's entry in the code table fitted on TRAIN
  agents (per code the mean head targets; class = majority label), the same read-out for both
  variants, against what the detection stack published for the agent (size, heading, tracker
  velocity, class). Errors are also normalised by those of a code-free guess (the TRAIN mean)
  and averaged into ``agent_recon_error``. The targeted decoder's own read-out is reported too;
* class accuracy decoded from tokens vs the detector's own (both against the ground truth);
* quantisation error (distance to the nearest code) as a novelty score: distributions per clutter
  level and under detector faults (:mod:`tps_perception.faults`: phantom cars, pose noise), and
  AUROCs against in-distribution agents.

Episodes come from stored shards (``--split``, default test) or are generated on the fly
(``--seeds``), labelled with their split (:mod:`tps_eval.seeds`). JSON (``--json``) + Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tps_common.geometry import wrap_angle
from tps_perception.faults import FaultInjector, FaultParams
from tps_perception.head_layout import CLASS_IDS, CLASS_NAMES
from tps_perception.tokenizer_layout import decode_targets
from tqdm import tqdm

from tps_eval.seeds import SeedError, SeedSet, warn_if_not_held_out

CLUTTER_LEVELS = ("none", "low", "medium", "high")
ID_CLUTTER = ("none", "low", "medium")   # in-distribution agents for the novelty AUROCs
BACKGROUND_CLEARANCE_M = 3.0             # background boxes keep this distance from agents/detections
BACKGROUND_MAX_RANGE_M = 50.0
PHANTOM_RATE = 3.0                       # phantoms per frame (FaultParams.phantom_rate)
POSITION_NOISE_M = 1.0                   # pose-noise fault (std)
HEADING_NOISE_RAD = 0.3
TARGETS = {"agent_recon_error_reduction": 0.30, "agent_code_share_targeted": 0.80, "class_acc_ratio": 0.95,
           "novelty_auroc": 0.80}
VARIANTS = ("targeted", "untargeted")


# --- small statistics ----------------------------------------------------------------------------
def auroc(negatives: np.ndarray, positives: np.ndarray) -> float | None:
    """Area under the ROC curve of a score that should be higher for ``positives`` (ties count
    half; Mann-Whitney U / (n_neg n_pos)). None when either side is empty."""
    neg = np.asarray(negatives, np.float64)
    pos = np.asarray(positives, np.float64)
    if len(neg) == 0 or len(pos) == 0:
        return None
    scores = np.concatenate([neg, pos])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):  # average ranks of ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    u = ranks[len(neg):].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(neg) * len(pos)))


def perplexity(codes: np.ndarray, k: int) -> float:
    """exp(entropy) of the code frequencies (1 = one code, k = uniform over all)."""
    if len(codes) == 0:
        return 0.0
    p = np.bincount(np.asarray(codes, np.int64), minlength=k) / len(codes)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def dist_summary(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return {"n": 0}
    return {"n": int(len(x)), "mean": float(x.mean()), "median": float(np.median(x)),
            "p10": float(np.percentile(x, 10)), "p90": float(np.percentile(x, 90))}


def background_boxes(rec, n: int, rng: np.random.Generator, size_pool: np.ndarray) -> np.ndarray:
    """``n`` boxes uniformly within range, clear of every agent and detection of the frame."""
    out = []
    taken = np.concatenate([rec.gt_boxes[:, :2], rec.boxes[:, :2]]) if len(rec.boxes) or len(rec.gt_boxes) \
        else np.zeros((0, 2))
    for _ in range(50 * max(1, n)):
        if len(out) >= n:
            break
        xy = rng.uniform(-BACKGROUND_MAX_RANGE_M, BACKGROUND_MAX_RANGE_M, 2)
        if np.hypot(*xy) > BACKGROUND_MAX_RANGE_M:
            continue
        lw = size_pool[rng.integers(len(size_pool))]
        reach = BACKGROUND_CLEARANCE_M + 0.5 * float(np.hypot(*lw)) + 3.0  # + a typical agent half-length
        if len(taken) and np.hypot(*(taken - xy).T).min() < reach:
            continue
        out.append([xy[0], xy[1], 0.8, lw[0], lw[1], 1.6, rng.uniform(-np.pi, np.pi)])
    return np.asarray(out, np.float32).reshape(-1, 7)


# --- reading codes back --------------------------------------------------------------------------
def readout_errors(table: np.ndarray, codes: np.ndarray, targets: np.ndarray) -> dict:
    """Errors of ``table[codes]`` against the published head targets (per agent arrays)."""
    dec = decode_targets(table[codes])
    ref = decode_targets(targets)
    size = np.abs(dec.size - ref.size).mean(1)
    yaw = np.abs(wrap_angle(dec.yaw - ref.yaw))
    vel = np.hypot(*(dec.velocity - ref.velocity).T)
    return {"size": size, "yaw": yaw, "vel": vel, "class_id": dec.class_id}


def baseline_errors(target_mean: np.ndarray, targets: np.ndarray) -> dict:
    """Errors of the code-free guess (the TRAIN mean head targets) on the same agents."""
    guess = np.tile(np.asarray(target_mean, np.float32), (len(targets), 1))
    return readout_errors(guess, np.arange(len(targets)), targets)


# --- the run --------------------------------------------------------------------------------------
def collect(episodes, core, untargeted_backend, seed: int, progress: bool = True) -> dict:
    """Run every episode; per variant the codes/errors of agents, false positives, background,
    phantoms and pose-noised agents, plus the published targets and classes."""
    from tps_eval.tokenizer.samples import episode_records

    rng = np.random.default_rng(seed)
    phantom_faults = FaultInjector(FaultParams(phantom_rate=PHANTOM_RATE, seed=seed))
    noise_faults = FaultInjector(FaultParams(position_noise_m=POSITION_NOISE_M, heading_noise_rad=HEADING_NOISE_RAD,
                                             seed=seed + 1))
    keys = ("agent", "fp", "background", "phantom", "noise")
    col: dict = {v: {k: {"codes": [], "qerr": []} for k in keys} for v in VARIANTS}
    col.update({"agent_targets": [], "agent_label": [], "agent_gt_class": [], "agent_clutter": [],
                "fp_clutter": [], "scene_codes": {v: [] for v in VARIANTS}, "frames": 0, "ms": []})
    size_pool = np.array([[4.5, 1.9], [4.7, 2.0], [10.0, 2.5], [12.0, 2.6], [0.7, 0.7], [1.8, 0.7]], np.float32)
    bar = tqdm(desc="tokenizer eval", unit="frame", disable=not progress)
    for frames in episodes:
        for rec, res in episode_records(frames, core, tokenize=True):
            col["frames"] += 1
            col["ms"].append(res.total_ms)
            real = ~rec.phantom
            tp = real & (rec.gt_index >= 0)
            fp = real & (rec.gt_index < 0) & (np.hypot(rec.boxes[:, 0], rec.boxes[:, 1]) < BACKGROUND_MAX_RANGE_M)
            n_tp = int(tp.sum())
            bg = background_boxes(rec, n_tp, rng, size_pool)
            det_boxes = rec.boxes[tp]
            ph = phantom_faults.apply(res.detections.select(np.zeros(len(rec.boxes), bool)),
                                      np.zeros(0, np.uint32), np.zeros((0, 2), np.float32))
            nz = noise_faults.apply(res.detections.select(tp), rec.ids[tp], rec.velocities[tp])
            groups = {"agent": (det_boxes, rec.velocities[tp]), "fp": (rec.boxes[fp], rec.velocities[fp]),
                      "background": (bg, np.zeros((len(bg), 2), np.float32)),
                      "phantom": (ph.detections.boxes[:, :7], ph.velocities),
                      "noise": (nz.detections.boxes[:, :7], nz.velocities)}
            feat = res.features
            for v in VARIANTS:
                boxes = np.concatenate([g[0] for g in groups.values()]).astype(np.float32).reshape(-1, 7)
                vel = np.concatenate([g[1] for g in groups.values()]).astype(np.float32).reshape(-1, 2)
                if v == "targeted":
                    codes, qerr, scodes, _ = core.token_backend(feat, boxes, vel)
                else:  # the ablation never saw a velocity: zeros, as in its training
                    codes, qerr, scodes, _ = untargeted_backend(feat, boxes, np.zeros_like(vel))
                col["scene_codes"][v].append(np.asarray(scodes))
                a = 0
                for name, (b, _) in groups.items():
                    col[v][name]["codes"].append(np.asarray(codes[a:a + len(b)], np.int64))
                    col[v][name]["qerr"].append(np.asarray(qerr[a:a + len(b)], np.float64))
                    a += len(b)
            col["agent_targets"].append(rec.targets[tp])
            col["agent_label"].append(rec.labels[tp])
            col["agent_gt_class"].append(rec.gt_class[tp])
            col["agent_clutter"] += [rec.clutter] * n_tp
            col["fp_clutter"] += [rec.clutter] * int(fp.sum())
            bar.update(1)
    bar.close()
    for v in VARIANTS:
        for name in keys:
            for f in ("codes", "qerr"):
                parts = col[v][name][f]
                col[v][name][f] = np.concatenate(parts) if parts else np.zeros(0)
        col["scene_codes"][v] = np.concatenate(col["scene_codes"][v]) if col["scene_codes"][v] else np.zeros(0)
    col["agent_targets"] = np.concatenate(col["agent_targets"]) if col["agent_targets"] else np.zeros((0, 13))
    for k in ("agent_label", "agent_gt_class"):
        col[k] = np.concatenate(col[k]) if col[k] else np.zeros(0, np.uint8)
    col["agent_clutter"] = np.asarray(col["agent_clutter"])
    col["fp_clutter"] = np.asarray(col["fp_clutter"])
    return col


def summarize(col: dict, tables: dict, target_mean: np.ndarray, k: dict, seeds: SeedSet | None) -> dict:
    """The evaluation's JSON from :func:`collect` output and the variants' code tables."""
    t = col["agent_targets"]
    base = baseline_errors(target_mean, t)
    gt_cls = col["agent_gt_class"]
    det_acc = float((col["agent_label"] == gt_cls).mean()) if len(gt_cls) else None
    det_per_class = {CLASS_NAMES[i]: (float((col["agent_label"][gt_cls == cid] == cid).mean())
                                      if (gt_cls == cid).any() else None) for i, cid in enumerate(CLASS_IDS)}
    res: dict = {"frames": col["frames"], "agents": int(len(t)), "detector_class_acc": det_acc,
                 "detector_class_acc_per_class": det_per_class,
                 "agents_per_class": {CLASS_NAMES[i]: int((gt_cls == cid).sum()) for i, cid in enumerate(CLASS_IDS)},
                 "baseline_error": {m: float(base[m].mean()) if len(t) else None for m in ("size", "yaw", "vel")},
                 "variants": {}}
    for v in VARIANTS:
        c = col[v]
        ag, bg = c["agent"]["codes"].astype(np.int64), c["background"]["codes"].astype(np.int64)
        n_ag = np.bincount(ag, minlength=k[v])
        n_bg = np.bincount(bg, minlength=k[v])
        used = (n_ag + n_bg) > 0
        share = float(((n_ag > n_bg) & used).sum() / max(1, used.sum()))
        row = {"codebook_size": k[v], "agent_perplexity": perplexity(ag, k[v]),
               "agent_codes_used": int((n_ag > 0).sum()), "agent_codebook_usage": float((n_ag > 0).sum() / k[v]),
               "perplexity_all": perplexity(np.concatenate([ag, bg]), k[v]),
               "codes_used": int(used.sum()), "agent_code_share": share,
               "scene_perplexity": perplexity(col["scene_codes"][v].astype(np.int64), 64),
               "scene_codes_used": int(len(np.unique(col["scene_codes"][v]))),
               "code_counts": {"agent": n_ag.tolist(), "background": n_bg.tolist()}}
        readouts = {"table": tables[v]["code_table"]}
        if v == "targeted" and tables[v].get("decoder_table") is not None:
            readouts["decoder"] = tables[v]["decoder_table"]
        for name, table in readouts.items():
            e = readout_errors(table, ag, t)
            norm = {m: float(e[m].mean() / max(1e-9, res["baseline_error"][m])) for m in ("size", "yaw", "vel")} \
                if len(t) else {}
            row[f"recon_{name}"] = {
                "size_err_m": float(e["size"].mean()) if len(t) else None,
                "yaw_err_rad": float(e["yaw"].mean()) if len(t) else None,
                "vel_err_mps": float(e["vel"].mean()) if len(t) else None,
                "normalised": norm,
                "agent_recon_error": float(np.mean(list(norm.values()))) if norm else None,
                "class_agreement_with_detector": float((e["class_id"] == col["agent_label"]).mean()) if len(t) else None,
                "class_acc": float((e["class_id"] == gt_cls).mean()) if len(t) else None,
                "class_acc_per_class": {CLASS_NAMES[i]: (float((e["class_id"][gt_cls == cid] == cid).mean())
                                                         if (gt_cls == cid).any() else None)
                                        for i, cid in enumerate(CLASS_IDS)},
            }
        # novelty: quantisation error
        q = {name: c[name]["qerr"] for name in ("agent", "fp", "background", "phantom", "noise")}
        id_mask = np.isin(col["agent_clutter"], ID_CLUTTER)
        q_id = q["agent"][id_mask]
        high_fp = q["fp"][col["fp_clutter"] == "high"]
        high_all = np.concatenate([q["agent"][col["agent_clutter"] == "high"], high_fp])
        row["qerr"] = {
            "agents_per_clutter": {lv: dist_summary(q["agent"][col["agent_clutter"] == lv]) for lv in CLUTTER_LEVELS},
            "false_positives_per_clutter": {lv: dist_summary(q["fp"][col["fp_clutter"] == lv]) for lv in CLUTTER_LEVELS},
            "phantoms": dist_summary(q["phantom"]), "pose_noise": dist_summary(q["noise"]),
            "background": dist_summary(q["background"]), "in_distribution": dist_summary(q_id)}
        row["auroc"] = {
            "phantom_and_high_clutter_fp": auroc(q_id, np.concatenate([q["phantom"], high_fp])),
            "phantom": auroc(q_id, q["phantom"]), "high_clutter_fp": auroc(q_id, high_fp),
            "high_clutter_all": auroc(q_id, high_all), "pose_noise": auroc(q_id, q["noise"]),
            "false_positive_all": auroc(q_id, q["fp"]), "background": auroc(q_id, q["background"]),
            **{f"clutter_{lv}_agents": auroc(q_id, q["agent"][col["agent_clutter"] == lv]) for lv in ("high",)}}
        res["variants"][v] = row
    tg, un = res["variants"]["targeted"], res["variants"]["untargeted"]
    e_t, e_u = tg["recon_table"]["agent_recon_error"], un["recon_table"]["agent_recon_error"]
    res.update({
        "agent_recon_error_targeted": e_t, "agent_recon_error_untargeted": e_u,
        "agent_recon_error_reduction": (1.0 - e_t / e_u) if (e_t is not None and e_u) else None,
        "agent_recon_reduction_per_attribute": {
            m: (1.0 - tg["recon_table"][f"{m}_err_{u}"] / un["recon_table"][f"{m}_err_{u}"])
            if len(t) else None for m, u in (("size", "m"), ("yaw", "rad"), ("vel", "mps"))},
        "agent_code_share_targeted": tg["agent_code_share"], "agent_code_share_untargeted": un["agent_code_share"],
        "class_acc_ratio": (tg["recon_table"]["class_acc"] / det_acc) if det_acc else None,
        "perplexity": tg["agent_perplexity"], "perplexity_untargeted": un["agent_perplexity"],
        "novelty_auroc": tg["auroc"]["phantom_and_high_clutter_fp"],
        "novelty_auroc_untargeted": un["auroc"]["phantom_and_high_clutter_fp"],
        "latency_ms_median": float(np.median(col["ms"])) if col["ms"] else None,
    })
    res["targets"] = {name: {"target": thr, "value": res[name],
                             "met": None if res[name] is None else bool(res[name] >= thr)}
                      for name, thr in TARGETS.items()}
    if seeds is not None:
        res.update({"seeds": seeds.to_dict(), "split": seeds.split, "held_out": seeds.held_out})
    return res


def to_markdown(res: dict) -> str:
    def f(v, d=3):
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{d}f}"

    tg, un = res["variants"]["targeted"], res["variants"]["untargeted"]
    lines = [f"# Tokenizer evaluation ({res['backend']}, {res['source']}, {res['frames']} frames, "
             f"{res['agents']} agents)", ""]
    if "seeds" in res:
        lines += [f"Seeds: {res['seeds']['first']}..{res['seeds']['last']} ({res['seeds']['count']}), split "
                  f"{res['split']}, {'held out' if res['held_out'] else 'NOT held out'}.", ""]
    lines += ["| metric | targeted | untargeted |", "|---|---|---|"]
    rows = [("codebook size", tg["codebook_size"], un["codebook_size"], 0),
            ("agent code perplexity", tg["agent_perplexity"], un["agent_perplexity"], 1),
            ("agent codes used", tg["agent_codes_used"], un["agent_codes_used"], 0),
            ("share of used codes mainly on agents", tg["agent_code_share"], un["agent_code_share"], 3),
            ("size error from code, m", tg["recon_table"]["size_err_m"], un["recon_table"]["size_err_m"], 3),
            ("heading error from code, rad", tg["recon_table"]["yaw_err_rad"], un["recon_table"]["yaw_err_rad"], 3),
            ("velocity error from code, m/s", tg["recon_table"]["vel_err_mps"], un["recon_table"]["vel_err_mps"], 3),
            ("agent_recon_error (1 = code-free guess)", tg["recon_table"]["agent_recon_error"],
             un["recon_table"]["agent_recon_error"], 3),
            ("class accuracy from code (vs GT)", tg["recon_table"]["class_acc"], un["recon_table"]["class_acc"], 3),
            ("AUROC qerr: phantoms + high-clutter FPs", tg["auroc"]["phantom_and_high_clutter_fp"],
             un["auroc"]["phantom_and_high_clutter_fp"], 3),
            ("AUROC qerr: phantoms", tg["auroc"]["phantom"], un["auroc"]["phantom"], 3),
            ("AUROC qerr: high-clutter false positives", tg["auroc"]["high_clutter_fp"], un["auroc"]["high_clutter_fp"], 3),
            ("AUROC qerr: all high-clutter detections", tg["auroc"]["high_clutter_all"], un["auroc"]["high_clutter_all"], 3),
            ("AUROC qerr: pose noise", tg["auroc"]["pose_noise"], un["auroc"]["pose_noise"], 3),
            ("AUROC qerr: background boxes", tg["auroc"]["background"], un["auroc"]["background"], 3)]
    for name, a, b, d in rows:
        lines.append(f"| {name} | {a if d == 0 else f(a, d)} | {b if d == 0 else f(b, d)} |")
    if "recon_decoder" in tg:
        r = tg["recon_decoder"]
        lines += ["", f"Targeted decoder read-out: size {f(r['size_err_m'])} m, heading {f(r['yaw_err_rad'])} rad, "
                  f"velocity {f(r['vel_err_mps'])} m/s, class accuracy {f(r['class_acc'])}."]
    lines += ["", f"Detector class accuracy (vs GT): {f(res['detector_class_acc'])}; class_acc_ratio "
              f"{f(res['class_acc_ratio'])}.", "", "Quantisation error (targeted), median [p10, p90]:", "",
              "| population | n | median | p10 | p90 |", "|---|---|---|---|---|"]
    qd = tg["qerr"]
    pops = [(f"agents, clutter {lv}", qd["agents_per_clutter"][lv]) for lv in CLUTTER_LEVELS]
    pops += [(f"false positives, clutter {lv}", qd["false_positives_per_clutter"][lv]) for lv in CLUTTER_LEVELS]
    pops += [("phantoms", qd["phantoms"]), ("pose noise", qd["pose_noise"]), ("background", qd["background"])]
    for name, d in pops:
        lines.append(f"| {name} | {d['n']} | {f(d.get('median'))} | {f(d.get('p10'))} | {f(d.get('p90'))} |")
    lines += ["", "Acceptance targets:", "", "| target | threshold | value | met |", "|---|---|---|---|"]
    for name, t in res["targets"].items():
        lines.append(f"| {name} | >= {t['target']} | {f(t['value'])} | {t['met']} |")
    return "\n".join(lines) + "\n"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``tps-eval tokenizer``."""
    from tps_eval import seeds as S

    S.add_arguments(ap, default="--split test (stored shards under data/sim/test)")
    ap.add_argument("--scenarios", default="all", help="for --seeds: 'all' or a comma-separated list")
    ap.add_argument("--duration", type=float, default=20.0, help="for --seeds: episode length, s")
    ap.add_argument("--frame-stride", type=int, default=10, help="for --seeds: keep every N-th 0.1 s step")
    ap.add_argument("--data-root", type=Path, default=None, help="for --split: root of the stored shards")
    ap.add_argument("--max-episodes", type=int, default=None, help="for --split: the first N shards")
    ap.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "onnxruntime-int8"),
                    help="detector (features) and tokenizer backend")
    ap.add_argument("--model-dir", type=Path, default=None, help="tokenizer (default models/tokenizer)")
    ap.add_argument("--detector-dir", type=Path, default=None, help="detector (default models/detector)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="background boxes and injected faults")
    ap.add_argument("--json", type=Path, default=None, help="write the result JSON here")
    ap.add_argument("--md", type=Path, default=None, help="Markdown report (default: next to --json)")


def run(args: argparse.Namespace) -> int:
    """``tps-eval tokenizer``: 0 on success, 2 on a usage error (missing model or shards, bad seeds)."""
    from tps_perception.backends import default_model_dir, load_meta
    from tps_perception.tokenizer import PerceptionTokenizer, TokenizerParams
    from tps_perception.tokenizer_backends import (
        default_tokenizer_dir,
        load_tokenizer_meta,
        make_feature_backend,
        make_token_backend,
        weights_name,
    )

    from tps_eval.detector.evaluate import evaluation_episodes

    det_dir = args.detector_dir or default_model_dir()
    tok_dir = args.model_dir or default_tokenizer_dir()
    try:
        det_meta = load_meta(det_dir)
        tok_meta = load_tokenizer_meta(tok_dir)
        fb = make_feature_backend(args.backend, det_dir, args.threads)
        tb = {v: make_token_backend(args.backend, v, tok_dir, args.threads) for v in VARIANTS}
        tables = {v: load_tables(Path(tok_dir) / weights_name(v)) for v in VARIANTS}
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        seeds, episodes, source = evaluation_episodes(args)
    except (SeedError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warn_if_not_held_out(seeds, "the tokenizer is evaluated")
    core = PerceptionTokenizer(TokenizerParams.from_meta(det_meta, tok_meta), fb, tb["targeted"], keep_features=True)
    t0 = time.time()
    col = collect(episodes, core, tb["untargeted"], args.seed)
    k = {v: int(tables[v]["code_table"].shape[0]) for v in VARIANTS}
    res = summarize(col, tables, np.asarray(tok_meta["target_mean"], np.float32), k, seeds)
    res.update({"backend": args.backend, "source": source, "model_dir": str(tok_dir), "detector_dir": str(det_dir),
                "faults": {"phantom_rate": PHANTOM_RATE, "position_noise_m": POSITION_NOISE_M,
                           "heading_noise_rad": HEADING_NOISE_RAD},
                "eval_wall_s": round(time.time() - t0, 1)})
    md = to_markdown(res)
    print(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
        (args.md or args.json.with_suffix(".md")).write_text(md)
    elif args.md:
        args.md.write_text(md)
    return 0


def load_tables(path: Path) -> dict:
    """The code tables of a tokenizer checkpoint (numpy): ``code_table`` (K, 13) fitted on TRAIN
    agents, ``decoder_table`` (K, 13) the decoder's head outputs per code (or None)."""
    import torch

    if not Path(path).exists():
        raise FileNotFoundError(f"tokenizer weights not found: {path} (run `make train-tokenizer`)")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    dec = ck.get("decoder_table")
    return {"code_table": ck["code_table"].numpy(), "decoder_table": None if dec is None else dec.numpy()}

