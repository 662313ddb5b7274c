"""Does a planner brake for what it sees? ``python -m training.brake_eval``.

Open-loop probe of one or more planner checkpoints on the same shards. Every frame with valid plan
points at +2.5 and +3.0 s falls in one group by the *expert's* plan:

- ``brakes_seen``: the expert's speed over +2.5..3.0 s is more than 3 m/s below the ego's
  (:func:`training.planner.expert_braking`) and the cause is in view
  (:func:`training.planner.braking_cause_in_view`: a token in the corridor ahead, an agent
  crossing, a signalised stop line);
- ``brakes_unseen``: the expert brakes as much for nothing the planner can see (SUMO's expert
  follows vehicles beyond the detector's range; :func:`training.planner.unobserved_braking`);
- ``keeps``: every other frame.

Per group: the ego's speed, the expert's and the plan's speed over +2.5..3.0 s, and for the
braking groups ``drop_share``, the mean of (ego - plan) / (ego - expert): the share of the
expert's speed drop the plan reproduces (1 = brakes as much, 0 = keeps its speed).

Each checkpoint runs twice: with the ego token's acceleration as measured (``accel``) and fed 0
(``accel0``). Open loop the ego is the expert, already braking when the lead has come into view, so
a planner that copies its own deceleration scores well with ``accel`` and drops with ``accel0``;
closed loop nobody has started braking for it. ``accel0``'s ``brakes_seen`` drop share is how much
braking the planner reads from the scene.

    python -m training.brake_eval models/planner/planner.pt runs/planner/x/planner.pt \\
        --data data/planner --split val --json runs/brake_eval.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

GROUPS = ("brakes_seen", "brakes_unseen", "keeps")


def plan_speed(traj: np.ndarray, dt_s: float, k0: int = 4, k1: int = 5) -> np.ndarray:
    """(N,) speed between plan points ``k0`` and ``k1`` of trajectories (N, K, 2) ``dt_s`` apart."""
    t = np.asarray(traj, np.float64)
    return np.linalg.norm(t[:, k1] - t[:, k0], axis=1) / dt_s


def shard_frames(d: dict, plan_dt_s: float) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """One shard's (ego speed, expert speed over +2.5..3.0 s, boolean masks (N,) of :data:`GROUPS`),
    the groups from :func:`training.planner.expert_braking` and
    :func:`training.planner.braking_cause_in_view`. Frames whose plan points 4 and 5 are not valid
    have a NaN expert speed and are in no group."""
    from training.planner import braking_cause_in_view, expert_braking

    ego_v = np.asarray(d["ego_speed"], np.float64)
    pv = d["plan_valid"]
    valid = pv[:, 4] & pv[:, 5] if pv.shape[1] >= 6 else np.zeros(len(ego_v), bool)
    expert_v = plan_speed(d["plan"], plan_dt_s) if pv.shape[1] >= 6 else np.full(len(ego_v), np.nan)
    expert_v = np.where(valid, expert_v, np.nan)
    brake, cause = expert_braking(d, plan_dt_s), braking_cause_in_view(d)
    groups = {"brakes_seen": brake & cause, "brakes_unseen": brake & ~cause, "keeps": valid & ~brake}
    return ego_v, expert_v, groups


def group_figures(ego_v: np.ndarray, expert_v: np.ndarray, plan_v: np.ndarray,
                  groups: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per group: n, mean ego / expert / plan speed [m/s], and for braking groups the drop share."""
    out = {}
    for name, m in groups.items():
        n = int(m.sum())
        row = {"n": n}
        for key, v in (("ego_mps", ego_v), ("expert_mps", expert_v), ("plan_mps", plan_v)):
            row[key] = float(np.mean(v[m])) if n else float("nan")
        if name != "keeps":
            drop = ego_v[m] - expert_v[m]
            row["drop_share"] = float(np.mean((ego_v[m] - plan_v[m]) / drop)) if n else float("nan")
        out[name] = row
    return out


@torch.no_grad()
def predicted_speeds(model, samples, zero_accel: bool = False, batch_size: int = 32) -> np.ndarray:
    """(N,) the plan's speed over +2.5..3.0 s for every sample; ``zero_accel`` feeds the ego
    token's acceleration as 0 (what a checkpoint trained without it reads)."""
    from tps_planner.vlm.layout import EGO_ACCEL_COL

    model.eval()
    out = []
    for a in range(0, len(samples), batch_size):
        b = samples.batch(range(a, min(len(samples), a + batch_size)))
        if zero_accel:
            b["ego"] = b["ego"].clone()
            b["ego"][:, EGO_ACCEL_COL] = 0.0
        out.append(plan_speed(model(b)["s3"]["trajectory"].numpy(), model.cfg.plan_dt_s))
    return np.concatenate(out)


def probe(path: Path, shard_paths: list[Path], split: str) -> dict:
    """Both passes (``accel``, ``accel0``) of one checkpoint: {pass: group figures}."""
    from tps_planner.vlm.model import InstructionTokenizer, load_planner

    from training.planner import PlannerSamples

    model, _ = load_planner(path)
    frames = [shard_frames(dict(np.load(p, allow_pickle=True)), model.cfg.plan_dt_s) for p in shard_paths]
    ego_v, expert_v = np.concatenate([f[0] for f in frames]), np.concatenate([f[1] for f in frames])
    groups = {k: np.concatenate([f[2][k] for f in frames]) for k in GROUPS}
    samples = PlannerSamples(shard_paths, model.cfg, InstructionTokenizer(model.cfg.max_text_tokens), (split,))
    if len(samples) != len(ego_v):
        raise ValueError(f"{path}: {len(samples)} samples but {len(ego_v)} shard frames")
    return {name: group_figures(ego_v, expert_v, predicted_speeds(model, samples, zero_accel=name == "accel0"), groups)
            for name in ("accel", "accel0")}


def table(rows: dict[str, dict]) -> str:
    """Markdown: one line per checkpoint and pass."""
    head = ("| model | acceleration in | braking, cause in view: n, ego / expert / plan m/s, drop share | "
            "braking, nothing in view: drop share | keeping speed: expert / plan m/s |")
    lines = [head, "|---|---|---|---:|---|"]
    for model, passes in rows.items():
        for name, g in passes.items():
            s, u, k = g["brakes_seen"], g["brakes_unseen"], g["keeps"]
            lines.append(f"| {model} | {'measured' if name == 'accel' else 'fed 0'} | {s['n']}: {s['ego_mps']:.1f} / "
                         f"{s['expert_mps']:.1f} / {s['plan_mps']:.1f}, **{s['drop_share']:.2f}** | "
                         f"{u['drop_share']:.2f} (n {u['n']}) | {k['expert_mps']:.1f} / {k['plan_mps']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from training.probe_cli import probe_parser, probe_shards

    args = probe_parser(__doc__.split("\n")[0]).parse_args(argv)
    paths = probe_shards(args)
    if paths is None:
        return 2
    rows = {str(p): probe(p, paths, args.split) for p in args.models}
    print(f"braking probe, {args.split} shards under {args.data} ({len(paths)} shards); speeds over +2.5..3.0 s")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
