"""The failure search's report: failure boundary per parameter (table + PNG), the worst cases
(BEV GIFs), search vs uniform random at the same budget, and the failures as a replayable suite.

Files written under the search's output folder::

    search.json        the summary (tps_eval.search.study.summarize) + boundary + paths
    failures.yaml      the failures as a suite: tps-eval closedloop --suite <out>/failures.yaml
    boundary/*.png     one plot per parameter: margin against the value, both arms
    bev/*.gif          the worst cases of the search arm
    report.md          all of it on one page
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml

from tps_eval.search.space import SearchSpace
from tps_eval.search.study import FAILURE_MARGIN, failure_suite, write_json

BINS = 4                 # bins of a numeric parameter in the boundary table
ARM_STYLE = {"search": ("tab:blue", "o"), "random": ("0.45", "x")}


def boundary(summary: Mapping, space: SearchSpace) -> dict:
    """Per parameter and arm: episodes, failures and the lowest margin per bin (numeric, BINS
    equal bins over the range) or per choice (categorical); and the failures' value range."""
    out: dict = {}
    rows = [r for r in summary["cases"] if r["metric"] is not None]
    for name, p in space.parameters.items():
        if p.type == "categorical":
            labels = [str(c) for c in p.choices]
            def which(v, p=p):
                return p.choices.index(v) if v in p.choices else None
        else:
            edges = np.linspace(p.low, p.high, BINS + 1)
            labels = [f"{edges[i]:.3g}-{edges[i + 1]:.3g}" for i in range(BINS)]
            def which(v, edges=edges):
                return int(min(np.searchsorted(edges, float(v), side="right") - 1, BINS - 1))
        entry: dict = {"type": p.type, "bins": labels}
        for arm in ("search", "random"):
            n = [0] * len(labels)
            fails = [0] * len(labels)
            low = [None] * len(labels)
            for r in rows:
                if r["arm"] != arm or name not in r["params"]:
                    continue
                k = which(r["params"][name])
                if k is None:
                    continue
                n[k] += 1
                fails[k] += int(r["failure"])
                low[k] = r["metric"] if low[k] is None else min(low[k], r["metric"])
            entry[arm] = {"episodes": n, "failures": fails, "min_margin": low}
        values = [r["params"][name] for r in rows if r["failure"] and name in r["params"]]
        if p.type != "categorical" and values:
            entry["failure_range"] = [float(min(values)), float(max(values))]
        out[name] = entry
    return out


def plot_boundaries(summary: Mapping, space: SearchSpace, out_dir: Path) -> dict[str, str]:
    """One PNG per parameter (margin against value, both arms; failures at -1); returns
    {parameter: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in summary["cases"] if r["metric"] is not None]
    paths = {}
    for name, p in space.parameters.items():
        fig, ax = plt.subplots(figsize=(5.0, 3.2), dpi=100)
        for arm, (colour, marker) in ARM_STYLE.items():
            pts = [(r["params"][name], r["metric"], r["failure"]) for r in rows
                   if r["arm"] == arm and name in r["params"]]
            if not pts:
                continue
            if p.type == "categorical":
                jitter = -0.12 if arm == "search" else 0.12
                xs = [p.choices.index(v) + jitter for v, _, _ in pts]
            else:
                xs = [float(v) for v, _, _ in pts]
            ys = [m for _, m, _ in pts]
            ax.scatter(xs, ys, c=colour, marker=marker, s=22, label=f"{arm} ({len(pts)})",
                       alpha=0.8)
            fx = [x for x, (_, _, f) in zip(xs, pts, strict=True) if f]
            if fx:
                ax.scatter(fx, [FAILURE_MARGIN] * len(fx), facecolors="none", edgecolors="red",
                           s=70, linewidths=1.2)
        if p.type == "categorical":
            ax.set_xticks(range(len(p.choices)))
            ax.set_xticklabels([str(c) for c in p.choices], rotation=30, ha="right", fontsize=7)
        ax.axhline(0.0, color="0.7", lw=0.8)
        ax.set_ylim(-1.15, 1.1)
        ax.set_xlabel(name)
        ax.set_ylabel("safety margin (-1 = failure)")
        ax.set_title(f"{name}: red rings = failures", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        path = out_dir / f"{name.replace('.', '_')}.png"
        fig.savefig(path)
        plt.close(fig)
        paths[name] = str(path)
    return paths


def worst_cases(summary: Mapping, arm: str = "search", k: int = 3) -> list[dict]:
    """The ``k`` lowest-margin episodes of an arm (failures first)."""
    rows = [r for r in summary["cases"] if r["arm"] == arm and r["metric"] is not None]
    return sorted(rows, key=lambda r: (r["metric"], r["trial"]))[:k]


def render_gifs(cases: Sequence[Mapping], out_dir: Path) -> dict[str, str]:
    """BEV GIFs of the given cases (from their episode folders); {episode: path}."""
    from tps_eval import report as R

    paths = {}
    for row in cases:
        mfile = Path(row.get("episode_dir") or "") / "metrics.json"
        if not mfile.is_file():
            continue
        try:
            result = json.loads(mfile.read_text())
            paths[row["episode"]] = R.episode_bev(result, out_dir, gif=True)["gif"]
        except Exception as exc:  # noqa: BLE001 - a plot failure never loses the search
            print(f"BEV of {row['episode']} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    return paths


def _fmt(v, nd: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.{nd}f}"
    return str(v)


def write_report(summary: dict, space: SearchSpace, out: Path, *, gifs: bool = True,
                 wall_s: float | None = None) -> dict:
    """Every file of the module docstring; returns the summary with ``boundary`` and ``paths``."""
    out = Path(out)
    summary = dict(summary)
    summary["boundary"] = boundary(summary, space)
    plots = plot_boundaries(summary, space, out / "boundary")
    suite = failure_suite(summary, space)
    suite_path = out / "failures.yaml"
    if suite["cases"]:
        suite_path.write_text(yaml.safe_dump(suite, sort_keys=False))
    elif suite_path.exists():
        suite_path.unlink()
    worst = worst_cases(summary, "search")
    gif_paths = render_gifs(worst, out / "bev") if gifs else {}
    summary["paths"] = {"failures_suite": str(suite_path) if suite["cases"] else None, "boundary": plots, "bev": gif_paths,
                        "report": str(out / "report.md"), "study": str(out / "study.db")}
    if wall_s is not None:
        summary["wall_s"] = round(wall_s, 1)
    write_json(out / "search.json", summary)
    (out / "report.md").write_text(report_markdown(summary, space, worst, gif_paths, out))
    return summary


def report_markdown(summary: Mapping, space: SearchSpace, worst: Sequence[Mapping],
                    gif_paths: Mapping[str, str], out: Path) -> str:
    """The one-page Markdown report."""
    def rel(p: str) -> str:
        try:
            return str(Path(p).relative_to(out))
        except ValueError:
            return p

    lines = [f"# Failure search: space `{summary['space']}`, configuration "
             f"`{summary['configuration']}`, seed {summary['seed']}", "",
             f"Budget {summary['budget']} episodes per arm; sampler {summary['sampler']}; "
             f"executor {summary['executor']} x {summary['workers']}"
             + (f"; wall {summary['wall_s'] / 60:.1f} min" if summary.get("wall_s") else "") + ".",
             "A failure is an at-fault collision or a red-light violation; the margin is "
             "min(1, min TTC / 3 s, min clearance / 2 m), -1 for a failure.", "",
             "A *neighbour* is a trial the search queued near an earlier failure or near miss "
             "(its numeric parameters moved a little, a new seed); the optimiser proposed the rest.", "",
             "| arm | episodes | failures | of which on neighbours | errors | mean margin | min margin |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for arm, suffix in (("search", ""), ("random", "_random")):
        if f"episodes{suffix}" in summary:
            by_nb = (f"{summary.get(f'failures_by_neighbours{suffix}', 0)} of "
                     f"{summary.get(f'neighbours{suffix}', 0)}")
            lines.append(f"| {arm} | {summary[f'episodes{suffix}']} | "
                         f"{summary[f'failures_found{suffix}']} | {by_nb} | {summary[f'errors{suffix}']} | "
                         f"{_fmt(summary[f'mean_margin{suffix}'])} | "
                         f"{_fmt(summary[f'min_margin{suffix}'])} |")
    if "ratio" in summary:
        lines += ["", f"Failures found, search / random: **{_fmt(summary['ratio'])}**."]
    if summary["paths"]["failures_suite"]:
        lines += ["", "Re-run every failure (any configuration):", "",
                  f"    tps-eval closedloop --suite {summary['paths']['failures_suite']} "
                  f"--configurations stack,{summary['configuration']}"]
    lines += ["",
              "## Failure boundary per parameter", "",
              "Failures / episodes per bin, search arm then random arm.", ""]
    for name, b in summary["boundary"].items():
        lines += [f"### `{name}`", ""]
        if "failure_range" in b:
            lo, hi = b["failure_range"]
            lines.append(f"Failures seen between {lo:.3g} and {hi:.3g}.")
            lines.append("")
        lines += ["| bin | " + " | ".join(b["bins"]) + " |",
                  "|---|" + "---:|" * len(b["bins"])]
        for arm in ("search", "random"):
            cells = [f"{f}/{n}" for f, n in zip(b[arm]["failures"], b[arm]["episodes"], strict=True)]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        plot = summary["paths"]["boundary"].get(name)
        if plot:
            lines += ["", f"![{name}]({rel(plot)})"]
        lines.append("")
    lines += ["## Worst cases (search arm)", "",
              "| episode | margin | seed | proposed by | parameters |", "|---|---:|---:|---|---|"]
    for r in worst:
        params = ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}"
                           for k, v in r["params"].items())
        nb = r.get("neighbour_of")
        by = "optimiser" if nb is None else f"neighbour of #{nb}"
        lines.append(f"| {r['episode']} | {_fmt(r['metric'])} | {r['seed']} | {by} | {params} |")
    for key, path in gif_paths.items():
        lines += ["", f"![{key}]({rel(path)})"]
    return "\n".join(lines) + "\n"
