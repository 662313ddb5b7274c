"""Does a planner steer back to its path when displaced? ``python -m training.recovery_eval``.

Open-loop probe of the recovery behaviour (:mod:`training.recovery`) of one or more planner
checkpoints on the same displaced copies of the VAL shards (seeded): for every sample the ego is
displaced (``--lateral-sigma`` m, ``--heading-sigma-deg``), the planner plans from there, and the
table gives

- ``l2_*``: distance of the plan to the recovery label at 1/2/3 s [m];
- ``removed_3s``: the share of the ego's lateral offset from the expert's path that the plan has
  removed at 3 s (1 = back on the path, 0 = keeps its offset and drives parallel to the path,
  < 0 = drifts further), over samples moving faster than 3 m/s and displaced by more than 0.3 m;
- the same L2 on the undisplaced samples (``l2_mean_nominal``) beside it.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from training.recovery import RecoveryConfig, to_displaced


def lateral_from_path(point: np.ndarray, path: np.ndarray, heading: float) -> float:
    """Signed lateral offset (left +) of ``point`` from the polyline ``path`` (first node = start,
    its direction there ``heading`` where the path does not move)."""
    from tps_planner.vlm.layout import route_frame

    if len(path) < 2 or float(np.hypot(*(path[-1] - path[0]))) < 0.5:
        return float(-np.sin(heading) * (point[0] - path[0, 0]) + np.cos(heading) * (point[1] - path[0, 1]))
    _, lat, _ = route_frame(path, np.array([point[0], point[1], 0.0]))
    return lat


@torch.no_grad()
def probe(model, samples, offsets: np.ndarray, plans_orig: np.ndarray, valid: np.ndarray,
          speeds: np.ndarray, batch: int = 32) -> dict:
    """Figures of one model on displaced samples (``samples``: recovery copies only)."""
    model.eval()
    plans = []
    for a in range(0, len(samples), batch):
        b = samples.batch(range(a, min(len(samples), a + batch)))
        plans.append(model(b)["s3"]["trajectory"].numpy())
    plan = np.concatenate(plans)
    target = samples.data["plan_target"].numpy()
    ok = samples.data["plan_valid"].numpy()
    err = np.linalg.norm(plan - target, axis=-1)
    res = {}
    for s in (1, 2, 3):
        k = 2 * s - 1
        res[f"l2_{s}s"] = float(err[ok[:, k], k].mean())
    res["l2_mean"] = float(np.mean([res["l2_1s"], res["l2_2s"], res["l2_3s"]]))
    removed = []
    for i, (dy, dpsi) in enumerate(offsets):
        if speeds[i] < 3.0 or abs(dy) < 0.3 or not valid[i, 5]:
            continue
        path = np.concatenate([to_displaced(np.zeros((1, 2)), dy, dpsi),
                               to_displaced(plans_orig[i][valid[i]], dy, dpsi)])
        l0 = lateral_from_path(np.zeros(2), path, -dpsi)
        l3 = lateral_from_path(plan[i, 5], path, -dpsi)
        removed.append(1.0 - l3 / l0)
    res["removed_3s"] = float(np.median(removed)) if removed else float("nan")
    res["removed_3s_mean"] = float(np.mean(removed)) if removed else float("nan")
    res["samples"] = int(len(samples))
    res["removed_samples"] = len(removed)
    return res


def main(argv: list[str] | None = None) -> int:
    from tps_planner.vlm.layout import EGO_SPEED_SCALE_MPS
    from tps_planner.vlm.model import InstructionTokenizer, load_planner

    from training.planner import PlannerSamples, evaluate
    from training.probe_cli import probe_parser, probe_shards

    ap = probe_parser(__doc__.split("\n")[0])
    ap.add_argument("--lateral-sigma", type=float, default=0.6)
    ap.add_argument("--heading-sigma-deg", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args(argv)
    paths = probe_shards(args)
    if paths is None:
        return 2
    rec = RecoveryConfig(lateral_sigma_m=args.lateral_sigma, heading_sigma_rad=np.deg2rad(args.heading_sigma_deg))
    rows = {}
    for path in args.models:
        model, _ = load_planner(path)
        tok = InstructionTokenizer(model.cfg.max_text_tokens)
        both = PlannerSamples(paths, model.cfg, tok, (args.split,), recovery_copies=1, recovery=rec, seed=args.seed)
        disp, orig = both.subset(both.recovered), both.subset(~both.recovered)
        res = probe(model, disp, disp.offsets, orig.data["plan_target"].numpy(), orig.data["plan_valid"].numpy(),
                    orig.data["ego"].numpy()[:, 0] * EGO_SPEED_SCALE_MPS)
        res["l2_mean_nominal"] = evaluate(model, orig)["l2_mean"]
        rows[str(path)] = res
    cols = ("l2_1s", "l2_2s", "l2_3s", "l2_mean", "removed_3s", "removed_3s_mean", "l2_mean_nominal")
    print(f"VAL displaced copies ({args.split}, lateral sigma {args.lateral_sigma} m, heading sigma "
          f"{args.heading_sigma_deg} deg, seed {args.seed}; removed_3s over "
          f"{next(iter(rows.values()))['removed_samples']} samples > 3 m/s, |dy| > 0.3 m)")
    print("| model | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
