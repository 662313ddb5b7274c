"""Detector evaluation: ``python -m tps_perception.eval_detector --split test [--json PATH]``.

Runs the full detector (numpy preprocessing -> backend -> numpy decoding -> tracker, exactly as
the node) over every frame of held-out episodes and scores it with the nuScenes devkit
(:mod:`tps_perception.metrics`): AP per class at 0.5/1/2/4 m centre distance and their mean,
ATE/ASE/AOE/AVE, within 50 m; overall and per clutter level. Velocities come from the tracker
(the network sees one frame), so each episode is run in time order with a fresh tracker.

Ground truth is every agent the lidar hit within 50 m, parked cars included as cars (nuScenes
annotates them as ``vehicle.car``; see :mod:`tps_perception.data`). ``--traffic-only`` scores the
traffic alone: parked cars leave the ground truth and every detection whose centre lies on a
parked car (its footprint grown by :data:`IGNORE_MARGIN_M`) is ignored -- neither a true nor a false
positive, like an ignore region.

Episodes come from stored shards (``--split``) or are generated fresh with
``tps_sim.dataset.generate_episode`` (``--seeds A:B``). Writes JSON (``--json``) and Markdown
(``--md``, default next to the JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tps_perception.backends import BACKENDS, default_model_dir, load_meta, make_backend
from tps_perception.data import (
    PARKED_ID_BASE,
    Frame,
    episode_frames,
    episode_frames_from_arrays,
    in_footprint,
    shard_paths,
)
from tps_perception.detector import Detector, DetectorParams
from tps_perception.metrics import DIST_THS_M, OUR_NAME, FrameBoxes, evaluate_boxes

CLUTTER_LEVELS = ("none", "low", "medium", "high")
IGNORE_MARGIN_M = 1.0  # --traffic-only: a detection this close to a parked car's footprint is ignored


def on_boxes(xy: np.ndarray, boxes: np.ndarray, margin_m: float) -> np.ndarray:
    """(N,) bool: which points ``xy`` (N, 2) lie in any of the footprints ``boxes`` (B, >=7),
    each grown by ``margin_m`` on every side."""
    hit = np.zeros(len(xy), bool)
    for b in boxes:
        hit |= in_footprint(xy, b, margin_m)
    return hit


def _parse_seeds(text: str) -> list[int]:
    a, b = text.split(":")
    return list(range(int(a), int(b)))


def generated_episodes(seeds: list[int], scenarios: list[str], duration_s: float,
                       frame_stride: int) -> Iterator[list[Frame]]:
    """Fresh episodes from the dataset generator (``tps_sim.dataset.episode_arrays``; nothing is
    stored). An episode the simulator cannot start is reported and skipped."""
    from tps_sim import dataset

    for s in seeds:
        for sc in scenarios:
            try:
                arrays = dataset.episode_arrays(sc, s, duration_s=duration_s, frame_stride=frame_stride,
                                                image_every=0)
            except Exception as exc:  # noqa: BLE001 - one failed episode must not end the evaluation
                print(f"warning: episode {sc}/seed{s} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            yield list(episode_frames_from_arrays(arrays, seed=s, scenario=sc))


def stored_episodes(split: str, root: Path | None, max_episodes: int | None) -> Iterator[list[Frame]]:
    paths = shard_paths(split, root)
    if max_episodes:
        paths = paths[:max_episodes]
    if not paths:
        raise FileNotFoundError(f"no shards for split {split!r} under {root or 'data/sim'}; "
                                f"run `tps-sim dataset --split {split}` or use --seeds")
    for p in paths:
        yield list(episode_frames(p))


def run_detector(episodes, detector: Detector, progress: bool = True, traffic_only: bool = False):
    """Detect over every frame; return (gt, pred, timings_ms) lists of FrameBoxes.

    ``traffic_only``: parked cars (ids from PARKED_ID_BASE) leave the ground truth and detections
    on them are dropped (ignored)."""
    gt, pred, times = [], [], []
    bar = tqdm(desc="eval", unit="frame", disable=not progress)
    for frames in episodes:
        detector.reset()
        for f in frames:
            token = f"{f.scenario}/{f.seed}/{f.index}"
            res = detector.run(f.points, f.t_s, f.ego_pose)
            d, vel = res.detections, res.velocities
            g = np.ones(len(f.gt_id), bool)
            if traffic_only:
                parked = f.gt_id >= PARKED_ID_BASE
                g = ~parked
                keep = ~on_boxes(d.boxes[:, :2], f.gt_boxes[parked], IGNORE_MARGIN_M)
                d, vel = d.select(keep), vel[keep]
            gt.append(FrameBoxes(token, f.gt_boxes[g, :7], f.gt_class[g], f.gt_boxes[g, 7:9],
                                 num_pts=f.gt_num_points[g], group=f.clutter))
            pred.append(FrameBoxes(token, d.boxes, d.labels, vel, scores=d.scores, group=f.clutter))
            times.append(res.total_ms)
            bar.update(1)
    bar.close()
    return gt, pred, times


def summarize(gt, pred, backend: str, source: str, times) -> dict:
    overall = evaluate_boxes(gt, pred)
    per_clutter = {}
    for level in CLUTTER_LEVELS + tuple(sorted({g.group for g in gt} - set(CLUTTER_LEVELS))):
        sel = [i for i, g in enumerate(gt) if g.group == level]
        if not sel:
            continue
        m = evaluate_boxes([gt[i] for i in sel], [pred[i] for i in sel])
        per_clutter[level] = {"car_map": m.map.get("car"), "mean_ap": m.mean_ap, "frames": len(sel), **m.to_dict()}
    return {
        "backend": backend,
        "source": source,
        "frames": len(gt),
        "car_map": overall.map.get("car"),
        "mean_ap": overall.mean_ap,
        "per_clutter": per_clutter,
        "overall": overall.to_dict(),
        "latency_ms_median": float(np.median(times)) if times else None,
        "max_range_m": 50.0,
        "dist_ths_m": list(DIST_THS_M),
    }


def to_markdown(res: dict) -> str:
    def f(v):
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"

    lines = [f"# Detector evaluation ({res['backend']}, {res['source']}, {res['frames']} frames)", "",
             f"Ground truth: {res.get('ground_truth', 'traffic + parked cars (as car)')}.", "",
             f"car mAP {f(res['car_map'])}, mean AP over classes {f(res['mean_ap'])} "
             f"(nuScenes centre distance {res['dist_ths_m']} m, within {res['max_range_m']} m)", "",
             "| class | #GT | AP@0.5 | AP@1 | AP@2 | AP@4 | mAP | ATE | ASE | AOE | AVE |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    ov = res["overall"]
    for name in OUR_NAME.values():
        ap = ov["ap"][name]
        tp = ov["tp"].get(name, {})
        lines.append(f"| {name} | {ov['num_gt'][name]} | " + " | ".join(f(ap[str(t)]) for t in DIST_THS_M)
                     + f" | {f(ov['map'][name])} | " + " | ".join(f(tp.get(k)) for k in ("ATE", "ASE", "AOE", "AVE")) + " |")
    lines += ["", "Per clutter level:", "", "| clutter | frames | mean AP | " +
              " | ".join(f"{n} mAP" for n in OUR_NAME.values()) + " |", "|---" * (3 + len(OUR_NAME)) + "|"]
    for level, m in res["per_clutter"].items():
        lines.append(f"| {level} | {m['frames']} | {f(m['mean_ap'])} | "
                     + " | ".join(f(m["map"][n]) for n in OUR_NAME.values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--split", default="test", choices=("train", "val", "test"))
    src.add_argument("--seeds", help="A:B -- generate fresh episodes for seeds A..B-1 (held-out: use test seeds)")
    ap.add_argument("--scenarios", default="all", help="for --seeds: 'all' or a comma-separated list")
    ap.add_argument("--duration", type=float, default=20.0, help="for --seeds: episode length, s")
    ap.add_argument("--frame-stride", type=int, default=10, help="for --seeds: keep every N-th 0.1 s step")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--max-episodes", type=int, default=None)
    ap.add_argument("--backend", default="torch", choices=BACKENDS)
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--score-threshold", type=float, default=0.05,
                    help="AP needs the low-score tail; the node uses its own (higher) threshold")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--traffic-only", action="store_true",
                    help="score the traffic alone: parked cars leave the ground truth and detections on "
                         "them are ignored")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args(argv)

    model_dir = args.model_dir or default_model_dir()
    try:
        meta = load_meta(model_dir)
        backend = make_backend(args.backend, model_dir, args.threads)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    params = DetectorParams.from_meta(meta, score_threshold=args.score_threshold)
    detector = Detector(params, backend)
    if args.seeds:
        seeds = _parse_seeds(args.seeds)
        from tps_sim.splits import split_of
        from tps_sim.world import SCENARIOS

        try:
            trained_on = [s for s in seeds if split_of(s) == "train"]
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if trained_on:
            print(f"error: seeds {trained_on[0]}.. are TRAIN seeds; evaluate on held-out (val/test) seeds",
                  file=sys.stderr)
            return 2

        scenarios = list(SCENARIOS) if args.scenarios == "all" else args.scenarios.split(",")
        episodes = generated_episodes(seeds, scenarios, args.duration, args.frame_stride)
        source = (f"generated seeds {args.seeds} x {len(scenarios)} scenarios, {args.duration:g} s, "
                  f"frame stride {args.frame_stride}")
    else:
        episodes = stored_episodes(args.split, args.data_root, args.max_episodes)
        source = f"split {args.split}"
    t0 = time.time()
    try:
        gt, pred, times = run_detector(episodes, detector, traffic_only=args.traffic_only)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res = summarize(gt, pred, args.backend, source, times)
    res["model_dir"] = str(model_dir)
    res["ground_truth"] = ("traffic only (parked cars and detections on them ignored)" if args.traffic_only
                           else "traffic + parked cars (as car)")
    res["eval_wall_s"] = round(time.time() - t0, 1)
    md = to_markdown(res)
    print(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
        (args.md or args.json.with_suffix(".md")).write_text(md)
    elif args.md:
        args.md.write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
