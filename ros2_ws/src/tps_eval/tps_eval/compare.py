"""Compare two closed-loop runs episode by episode (``tps-eval compare A.json B.json``).

The closed loop is bit-for-bit repeatable given the seed (docs/CONTRACTS.md), so a refactor that
must not change behaviour shows zero differences here, and a change that should shows exactly the
episodes it touched. Wall-clock measurements (latencies, how many selected trajectories the
recorder heard) and file locations are not compared.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tps_eval.metrics import EpisodeMetrics

# Metric keys that are wall-clock measurements or bookkeeping, never compared.
NOT_COMPARED = frozenset(EpisodeMetrics.NON_DETERMINISTIC) | {"graph_warning", "trajectories_heard"}
SPEC_KEYS = ("case_id", "seed", "configuration")


@dataclass(frozen=True)
class Difference:
    """One metric of one episode that differs between the runs (``None`` = missing)."""

    episode: str
    key: str
    a: object
    b: object


def load_run(path: str | Path) -> dict[str, dict]:
    """Episode key (``<case>-s<seed>-<configuration>``) -> result dict of a ``--json`` file."""
    doc = json.loads(Path(path).read_text())
    out = {}
    for r in doc.get("episodes", []):
        s = r["spec"]
        out[f"{s['case_id']}-s{s['seed']}-{s['configuration']}"] = r
    return out


def _equal(a, b, rel_tol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b if rel_tol == 0 else math.isclose(a, b, rel_tol=rel_tol, abs_tol=rel_tol)
    return a == b


def metric_keys(run: dict[str, dict]) -> set[str]:
    """Every metric key any episode of a run reports."""
    return {k for r in run.values() for k in (r.get("metrics") or {})}


def compare_runs(a: dict[str, dict], b: dict[str, dict], rel_tol: float = 0.0) -> list[Difference]:
    """Every deterministic difference between two runs: episodes present in only one run, status,
    and each metric both runs report (``rel_tol`` 0 = exact). A metric only one run knows (a
    metric added since) is not a difference in behaviour: :func:`metric_keys` lists them."""
    diffs: list[Difference] = []
    shared = metric_keys(a) & metric_keys(b)
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key), b.get(key)
        if ra is None or rb is None:
            diffs.append(Difference(key, "episode", "present" if ra else None, "present" if rb else None))
            continue
        if ra["status"] != rb["status"]:
            diffs.append(Difference(key, "status", ra["status"], rb["status"]))
        ma, mb = ra.get("metrics") or {}, rb.get("metrics") or {}
        for m in sorted(((set(ma) | set(mb)) & shared) - NOT_COMPARED):
            if not _equal(ma.get(m), mb.get(m), rel_tol):
                diffs.append(Difference(key, m, ma.get(m), mb.get(m)))
    return diffs


def run(args) -> int:
    """The ``compare`` verb: print the differences; exit 0 when there are none, 1 otherwise."""
    a, b = load_run(args.a), load_run(args.b)
    diffs = compare_runs(a, b, args.rel_tol)
    common = len(set(a) & set(b))
    print(f"{common} episodes in both runs ({len(a)} in {args.a}, {len(b)} in {args.b}); "
          f"{len({d.episode for d in diffs})} differ, {len(diffs)} differences"
          + (f" (rel_tol {args.rel_tol})" if args.rel_tol else " (exact)"))
    only_a, only_b = sorted(metric_keys(a) - metric_keys(b)), sorted(metric_keys(b) - metric_keys(a))
    if only_a or only_b:
        print(f"metrics not compared (reported by one run only): {args.a}: {only_a or 'none'}; "
              f"{args.b}: {only_b or 'none'}")
    for d in diffs:
        print(f"  {d.episode:40s} {d.key:28s} {str(d.a)[:60]:>30s} -> {str(d.b)[:60]}")
    return 1 if diffs else 0
