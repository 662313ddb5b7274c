"""Detector evaluation: ``tps-eval detector [--split test | --seeds A:B] [--json PATH]``.

Runs the full detector (numpy preprocessing -> backend -> numpy decoding -> tracker, exactly as
the node) over every frame of held-out episodes and scores it with the nuScenes devkit
(:mod:`tps_eval.detector.metrics`): AP per class at 0.5/1/2/4 m centre distance and their mean,
ATE/ASE/AOE/AVE, within 50 m; overall and per clutter level (docs/METRICS.md, "Detection").
Velocities come from the tracker (the network sees one frame), so each episode is run in time
order with a fresh tracker.

Ground truth is every agent the lidar hit within 50 m, parked cars included as cars (nuScenes
annotates them as ``vehicle.car``; see :mod:`tps_eval.detector.data`). ``--traffic-only`` scores the
traffic alone: parked cars leave the ground truth and every detection whose centre lies on a
parked car (its footprint grown by :data:`IGNORE_MARGIN_M`) is ignored -- neither a true nor a false
positive, like an ignore region.

Episodes come from stored shards (``--split``, default test) or are generated fresh with
``tps_sim.dataset.episode_arrays`` (``--seeds``, :mod:`tps_eval.seeds` syntax). The JSON and the
Markdown carry the seeds' split label (``seeds``, ``split``, ``held_out``): TRAIN and VAL seeds
are evaluated when asked for but never labelled held out. Writes JSON (``--json``) and Markdown
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
from tps_perception.backends import BACKENDS, default_model_dir, load_meta, make_backend
from tqdm import tqdm

from tps_eval.detector.data import (
    PARKED_ID_BASE,
    Frame,
    episode_frames,
    episode_frames_from_arrays,
    in_footprint,
    shard_paths,
)
from tps_eval.detector.metrics import DIST_THS_M, OUR_NAME, FrameBoxes, evaluate_boxes
from tps_eval.seeds import SeedError, SeedSet, from_seeds, warn_if_not_held_out

CLUTTER_LEVELS = ("none", "low", "medium", "high")
IGNORE_MARGIN_M = 1.0  # --traffic-only: a detection this close to a parked car's footprint is ignored


def on_boxes(xy: np.ndarray, boxes: np.ndarray, margin_m: float) -> np.ndarray:
    """(N,) bool: which points ``xy`` (N, 2) lie in any of the footprints ``boxes`` (B, >=7),
    each grown by ``margin_m`` on every side."""
    hit = np.zeros(len(xy), bool)
    for b in boxes:
        hit |= in_footprint(xy, b, margin_m)
    return hit


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


def stored_shards(split: str, root: Path | None, max_episodes: int | None) -> list[Path]:
    """The shards of a stored split (``data/sim/<split>/<scenario>/seed<N>.npz``), the first
    ``max_episodes`` of them.

    Raises:
        FileNotFoundError: there are none (the message says how to make them).
    """
    paths = shard_paths(split, root)
    if max_episodes:
        paths = paths[:max_episodes]
    if not paths:
        raise FileNotFoundError(f"no shards for split {split!r} under {root or 'data/sim'}; "
                                f"run `tps-sim dataset --split {split}` or use --seeds")
    return paths


def shard_seeds(paths: list[Path], split: str) -> SeedSet:
    """The seeds of stored shards (from their ``seed<N>.npz`` names), labelled by their own
    split, so a shard that is not of ``split`` shows in the label."""
    seeds = sorted({int(p.stem.replace("seed", "")) for p in paths if p.stem.startswith("seed")})
    return from_seeds(seeds, f"split {split}")


def stored_episodes(paths: list[Path]) -> Iterator[list[Frame]]:
    """The frames of each shard, one episode at a time."""
    for p in paths:
        yield list(episode_frames(p))



def evaluation_episodes(args: argparse.Namespace) -> tuple[SeedSet, Iterator[list[Frame]], str]:
    """The episodes an evaluation verb reads: fresh ones generated for ``--seeds`` (x
    ``--scenarios``) or the stored shards of ``--split`` (test by default); with the seed set and a
    line saying where they came from. Raises SeedError / FileNotFoundError."""
    from tps_sim.world import SCENARIOS

    if args.seeds:
        from tps_eval.seeds import seed_set

        seeds = seed_set(args.seeds)
        scenarios = list(SCENARIOS) if args.scenarios == "all" else args.scenarios.split(",")
        episodes = generated_episodes(list(seeds.seeds), scenarios, args.duration, args.frame_stride)
        return seeds, episodes, (f"generated seeds {args.seeds} x {len(scenarios)} scenarios, "
                                 f"{args.duration:g} s, frame stride {args.frame_stride}")
    split = args.split or "test"
    paths = stored_shards(split, args.data_root, args.max_episodes)
    return shard_seeds(paths, split), stored_episodes(paths), f"split {split}"

def run_detector(episodes, detector, progress: bool = True, traffic_only: bool = False):
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


def summarize(gt, pred, backend: str, source: str, times, seeds: SeedSet | None = None) -> dict:
    """The evaluation's JSON (keys documented in docs/METRICS.md, "Detection"); ``seeds`` adds
    the split label (``seeds``, ``split``, ``held_out``)."""
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
        **({"seeds": seeds.to_dict(), "split": seeds.split, "held_out": seeds.held_out}
           if seeds is not None else {}),
    }


def to_markdown(res: dict) -> str:
    def f(v):
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"

    lines = [f"# Detector evaluation ({res['backend']}, {res['source']}, {res['frames']} frames)", "",
             f"Ground truth: {res.get('ground_truth', 'traffic + parked cars (as car)')}.", "",
             *([f"Seeds: {res['seeds']['first']}..{res['seeds']['last']} ({res['seeds']['count']}), "
                f"split {res['split']}, {'held out' if res['held_out'] else 'NOT held out'}.", ""]
               if "seeds" in res else []),
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


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``tps-eval detector`` (those of the former ``python -m
    tps_perception.eval_detector``; ``--split`` and ``--seeds`` from :mod:`tps_eval.seeds`)."""
    from tps_eval import seeds as S

    S.add_arguments(ap, default="--split test (stored shards under data/sim/test)")
    ap.add_argument("--scenarios", default="all", help="for --seeds: 'all' or a comma-separated list")
    ap.add_argument("--duration", type=float, default=20.0, help="for --seeds: episode length, s")
    ap.add_argument("--frame-stride", type=int, default=10, help="for --seeds: keep every N-th 0.1 s step")
    ap.add_argument("--data-root", type=Path, default=None,
                    help="for --split: root of the stored shards (default data/sim)")
    ap.add_argument("--max-episodes", type=int, default=None, help="for --split: the first N shards")
    ap.add_argument("--backend", default="torch", choices=BACKENDS)
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--score-threshold", type=float, default=0.05,
                    help="AP needs the low-score tail; the node uses its own (higher) threshold")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--traffic-only", action="store_true",
                    help="score the traffic alone: parked cars leave the ground truth and detections on "
                         "them are ignored")
    ap.add_argument("--json", type=Path, default=None, help="write the result JSON here")
    ap.add_argument("--md", type=Path, default=None, help="Markdown table (default: next to --json)")


def run(args: argparse.Namespace) -> int:
    """``tps-eval detector``: 0 on success, 2 on a usage error (missing model or shards, bad seeds)."""
    from tps_perception.detector import Detector, DetectorParams

    model_dir = args.model_dir or default_model_dir()
    try:
        meta = load_meta(model_dir)
        backend = make_backend(args.backend, model_dir, args.threads)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    params = DetectorParams.from_meta(meta, score_threshold=args.score_threshold)
    detector = Detector(params, backend)
    try:
        seeds, episodes, source = evaluation_episodes(args)
    except (SeedError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warn_if_not_held_out(seeds, "the detector is evaluated")
    t0 = time.time()
    gt, pred, times = run_detector(episodes, detector, traffic_only=args.traffic_only)
    res = summarize(gt, pred, args.backend, source, times, seeds)
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
