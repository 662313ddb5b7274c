"""The command line shared by the open-loop probes of planner checkpoints
(``training.recovery_eval``, ``training.brake_eval``): checkpoints, shards, threads, JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def probe_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the probes' common arguments; a probe adds its own."""
    from tps_perception.backends import repo_root

    root = repo_root()
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("models", nargs="+", type=Path, help="planner.pt checkpoints")
    ap.add_argument("--data", type=Path, default=root / "data" / "planner")
    ap.add_argument("--split", default="val", choices=("val", "train"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    return ap


def probe_shards(args: argparse.Namespace) -> list[Path] | None:
    """The shards of ``args.split`` under ``args.data`` (torch set to ``args.threads``); None, with
    the reason on stderr, when there are none."""
    import torch

    from training.planner import shard_paths

    torch.set_num_threads(args.threads)
    paths = shard_paths(args.data, args.split)
    if not paths:
        print(f"error: no {args.split} shards under {args.data}", file=sys.stderr)
        return None
    return paths
