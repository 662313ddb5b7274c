"""The VLM planner's dataset: ``python -m training.planner_data --split train --episodes N``.

One shard per simulated expert episode, ``<out>/<split>/<scenario>/seed<seed>.npz`` (default
``data/planner``). The samples of an episode (the expert drives; every frame through the
**frozen** onboard detector + tracker + tokenizer, ``--backend``, default ``onnxruntime-int8`` =
what the vehicle runs; ``--variant untargeted`` gives the tokenizer ablation's tokens on the same
episodes; labels from the simulator's ground truth) are built by
:mod:`tps_eval.openloop.samples` -- the same builder the open-loop evaluation (``tps-eval
openloop``) uses on fresh held-out episodes; its docstring lists the shard keys.

Splits: TRAIN or VAL seeds only (:mod:`tps_sim.splits`); a TEST seed is refused -- held-out
episodes are generated on the fly by the evaluation, in memory, never stored here.

Targeted data (issue 16): ``--from-search RESULTS`` builds the episodes that
``tps_sim.dataset.targeted_tasks`` plans around a ``tps-eval search``'s failures (their scenario,
clutter, density, adversary and sensor faults, perturbed, on TRAIN seeds of
``tps_sim.splits.TARGETED``) into the same root, so the next training reads the union.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from tps_eval.openloop.samples import (  # noqa: F401 (re-exported: the dataset's public names)
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MAX_AGENTS,
    DEFAULT_MAX_GT,
    FORMAT_VERSION,
    FUTURE_STEPS,
    PARKED_ID_BASE,
    PLAN_DT_S,
    PLAN_STEPS,
    episode_samples,
    expert_plan,
    make_core,
    sample_meta,
    simulate,
)


def default_out() -> Path:
    from tps_perception.backends import repo_root

    return repo_root() / "data" / "planner"


def build_episode(scenario: str, seed: int, out_dir: Path, core, core_info: dict, *, duration_s: float = 20.0,
                  sample_every: int = 5, image_size: tuple = DEFAULT_IMAGE_SIZE, max_agents: int = DEFAULT_MAX_AGENTS,
                  max_gt: int = DEFAULT_MAX_GT, overwrite: bool = False, progress=None,
                  world: dict | None = None) -> Path:
    """Simulate, tokenize and label one episode; write its shard (returns its path).

    Raises:
        ValueError: a TEST seed (held out) or a bad argument (named).
    """
    from tps_sim import splits

    split = splits.split_of(seed)
    if split == "test":
        raise ValueError(f"seed {seed} is a held-out TEST seed: never stored for training")
    path = Path(out_dir) / split / scenario / f"seed{seed}.npz"
    if path.exists() and not overwrite:
        return path
    arrays = simulate(scenario, seed, duration_s=duration_s, sample_every=sample_every, image_size=image_size,
                      **(world or {}))
    out = episode_samples(arrays, core, sample_every, max_agents, max_gt, progress)
    out["meta_json"] = np.array(json.dumps(sample_meta(
        arrays, scenario, seed, split, core_info, duration_s=duration_s, sample_every=sample_every,
        image_size=image_size, max_agents=max_agents, max_gt=max_gt), sort_keys=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **out)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    from tps_sim import splits
    from tps_sim.world import SCENARIOS
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="train", choices=("train", "val"), help="seed split (TEST is never stored)")
    ap.add_argument("--scenarios", default="all", help="'all' or a comma-separated list")
    ap.add_argument("--episodes", type=int, default=4, help="episodes per scenario (the first seeds of the split)")
    ap.add_argument("--first-seed-index", type=int, default=0, help="skip this many seeds of the split")
    ap.add_argument("--duration", type=float, default=20.0, help="episode length [s]")
    ap.add_argument("--sample-every", type=int, default=5, help="a sample every N 0.1 s frames")
    ap.add_argument("--image-size", default="160x90", metavar="WxH", help="downscaled camera size")
    ap.add_argument("--max-agents", type=int, default=DEFAULT_MAX_AGENTS)
    ap.add_argument("--backend", default="onnxruntime-int8", choices=("torch", "onnxruntime", "onnxruntime-int8"),
                    help="detector + tokenizer backend (frozen)")
    ap.add_argument("--variant", default="targeted", choices=("targeted", "untargeted"),
                    help="tokenizer variant (untargeted: the tokenizer ablation; use another --out)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path, default=None,
                    help="dataset root (default data/planner, data/planner_untargeted for --variant untargeted)")
    ap.add_argument("--instructions", default="fixed", choices=("fixed", "seeded"),
                    help="fixed: every scenario's own instruction; seeded: a seeded pick per episode among the "
                         "scenario's instruction variants (highway: keep lane, change lane left/right, 80 km/h; "
                         "several wordings each), executed by the expert")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--from-search", type=Path, default=None, metavar="RESULTS",
                    help="targeted episodes around a tps-eval search's failures (search.json or its folder); "
                         "--split, --scenarios, --episodes and --duration then come from the failures")
    ap.add_argument("--per-failure", type=int, default=4, help="with --from-search: episodes per failure")
    ap.add_argument("--perturb", type=float, default=0.1, help="with --from-search: parameter step, share of range")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.image_size.lower().split("x"))
    scenarios = list(SCENARIOS) if args.scenarios == "all" else args.scenarios.split(",")
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        print(f"error: unknown scenarios {unknown}; known: {sorted(SCENARIOS)}", file=sys.stderr)
        return 2
    if args.from_search is not None:
        return _from_search(args, (w, h))
    seeds = splits.seeds(args.split, args.first_seed_index + args.episodes)[args.first_seed_index:]
    out = args.out or (default_out() if args.variant == "targeted" else default_out().with_name("planner_untargeted"))
    core, info = make_core(args.backend, args.threads, args.variant)
    frames_per_ep = int(round(args.duration / 0.1)) + 1
    bar = tqdm(total=len(seeds) * len(scenarios) * frames_per_ep, desc=f"planner data {args.split}", unit="frame")
    errors, t0 = [], time.time()
    for seed in seeds:
        for sc in scenarios:
            try:
                p = build_episode(sc, seed, out, core, info, duration_s=args.duration, sample_every=args.sample_every,
                                  image_size=(w, h), max_agents=args.max_agents, overwrite=args.overwrite,
                                  progress=bar,
                                  world={"instruction": "seeded"} if args.instructions == "seeded" else None)
                bar.set_postfix_str(p.name)
            except Exception as exc:  # noqa: BLE001 - reported per episode, the run continues
                errors.append(f"{sc}/seed{seed}: {type(exc).__name__}: {exc}")
    bar.close()
    print(f"{len(seeds) * len(scenarios) - len(errors)} episodes in {time.time() - t0:.0f} s under {out}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


def _from_search(args: argparse.Namespace, image_size: tuple) -> int:
    from tps_sim.dataset import targeted_tasks
    from tqdm import tqdm

    src = args.from_search / "search.json" if args.from_search.is_dir() else args.from_search
    try:
        tasks = targeted_tasks(json.loads(src.read_text()), args.per_failure, args.perturb)
    except (OSError, ValueError) as exc:
        print(f"error: --from-search {src}: {exc}", file=sys.stderr)
        return 2
    out = args.out or default_out()
    core, info = make_core(args.backend, args.threads, args.variant)
    errors, t0 = [], time.time()
    for t in tqdm(tasks, desc="planner targeted data", unit="episode"):
        world = {k: t[k] for k in ("clutter", "density", "adversary", "sensor_faults")}
        try:
            build_episode(t["scenario"], t["seed"], out, core, info, duration_s=t["duration_s"],
                          sample_every=args.sample_every, image_size=image_size, max_agents=args.max_agents,
                          overwrite=args.overwrite, world=world)
        except Exception as exc:  # noqa: BLE001 - reported per episode, the run continues
            errors.append(f"{t['scenario']}/seed{t['seed']}: {type(exc).__name__}: {exc}")
    detector = sum(1 for t in tasks if t["detector_faults"])
    print(f"{len(tasks) - len(errors)} targeted episodes in {time.time() - t0:.0f} s under {out}"
          + (f"; {detector} come from failures under a detector fault, which the stored samples do not "
             f"reproduce" if detector else ""))
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
