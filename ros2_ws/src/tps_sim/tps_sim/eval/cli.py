"""``tps-eval``: closed-loop evaluation from the command line.

    tps-eval closedloop --suite default --seeds 9000:9005 --json runs/default.json \\
        [--executor local|ray] [--workers N] [--out DIR] [--ray-address ADDR]
    tps-eval demo        # make demo: the smoke suite, a table per scenario, report + BEV paths
    tps-eval suites      # list the suites

Seeds: ``A:B`` is the half-open range [A, B) (``9000:9005`` = five seeds), ``A`` or ``A,B,C``.
Output (``--out``, default ``runs/eval/<suite>-<UTC timestamp>/``): ``episodes/<episode>/``
(bridge log, graph output, metrics.json), ``summary.json``, ``report.md``, ``bev/`` (a PNG of
the key frame of every failed episode; ``--bev-gifs`` adds a GIF of each). ``--json PATH``
writes ``{"stack": {...}, "expert": {...}, "naive": {...}, "episodes": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tps_sim.eval import report as R
from tps_sim.eval.executors import EXECUTORS, default_domain_base, run_episodes
from tps_sim.eval.runner import finalize, per_case_table
from tps_sim.eval.suite import SuiteError, available_suites, load_suite, plan_episodes, repo_root

DEFAULT_WORKERS = 2
DEMO_SUITE = "smoke"
EXIT_USAGE = 2
EXIT_ALL_FAILED = 1


def _default_out(suite: str, prefix: str = "eval") -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return repo_root() / "runs" / prefix / f"{suite}-{stamp}"


def run_suite(suite_name: str, seeds: str | None, out: Path, executor: str, workers: int,
              domain_base: int | None, ray_address: str | None, bev: bool = True,
              bev_episode: str | None = None, progress: bool = True,
              bev_gifs: bool = False) -> dict:
    """Run a suite end to end and write its reports; returns the final dict with ``paths``.

    Args:
        bev: a BEV PNG (key frame) of every failed episode.
        bev_gifs: also an animated GIF of every failed episode (~10-20 s each on 2 cores).
        bev_episode: also render a GIF of the first episode of this configuration (the demo
            shows one animation even when nothing failed).
    """
    from tqdm import tqdm

    suite = load_suite(suite_name, seeds)
    out.mkdir(parents=True, exist_ok=True)
    specs = plan_episodes(suite, out)
    t0 = time.monotonic()
    counts = {"ok": 0, "failed": 0}
    bar = tqdm(total=len(specs), desc=f"suite {suite.name}", unit="episode", disable=not progress,
               dynamic_ncols=True)

    def on_result(r: dict) -> None:
        counts["ok" if r["status"] == "ok" else "failed"] += 1
        bar.update(1)
        bar.set_postfix(ok=counts["ok"], errors=counts["failed"],
                        last=f"{r['spec']['case_id']}/{r['spec']['configuration']}")
        if r["status"] != "ok":
            tqdm.write(f"episode {r['spec']['case_id']}-s{r['spec']['seed']}-"
                       f"{r['spec']['configuration']}: {r['error']}", file=sys.stderr)

    try:
        results = run_episodes(specs, executor, workers, domain_base, ray_address, on_result)
    finally:
        bar.close()
    wall_s = time.monotonic() - t0
    final = finalize(results)
    bev_paths: dict = {}
    first = None
    if bev:
        todo = [r for r in final["episodes"] if r["failures"] and Path(r["log_path"]).is_file()]
        first = None
        if bev_episode:
            first = next((r for r in final["episodes"]
                          if r["spec"]["configuration"] == bev_episode
                          and Path(r["log_path"]).is_file()), None)
            if first is not None and first not in todo:
                todo.append(first)
        for r in tqdm(todo, desc="BEV plots", unit="episode", disable=not progress or not todo):
            s = r["spec"]
            key = f"{s['case_id']}-s{s['seed']}-{s['configuration']}"
            try:
                paths = R.episode_bev(r, out / "bev", gif=bev_gifs or r is first)
                bev_paths[key] = paths.get("gif") or paths["png"]
                r["bev"] = paths
            except Exception as exc:  # noqa: BLE001 - a plot failure never loses the run
                tqdm.write(f"BEV of {key} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    run_info = {"suite": suite.name, "suite_file": suite.source,
                "seeds": f"{min(suite.seeds)}..{max(suite.seeds)} ({len(suite.seeds)})",
                "configurations": list(suite.configurations), "cases": len(suite.cases),
                "executor": executor, "workers": workers, "wall_s": round(wall_s, 1),
                "out": str(out), "host_cpus": os.cpu_count(),
                "finished_utc": datetime.now(UTC).isoformat(timespec="seconds")}
    case_rows = {cfg: per_case_table(final, cfg) for cfg in suite.configurations}
    paths = R.write_report(final, run_info, out, case_rows, bev_paths)
    final["run"] = run_info
    final["paths"] = dict(paths, bev=bev_paths)
    if bev and first is not None and first.get("bev", {}).get("gif"):
        final["paths"]["animation"] = first["bev"]["gif"]
    final["case_rows"] = case_rows
    return final


def _print_summary(final: dict) -> None:
    cols = (("configuration", "configuration", "{}"),) + R.AGG_COLUMNS[:6] + (
        R.AGG_COLUMNS[11], R.AGG_COLUMNS[14], R.AGG_COLUMNS[15])
    print(R.text_table(R.aggregate_rows(final), cols))
    for cfg in ("stack", "naive", "expert"):
        if cfg in final and final[cfg].get("failure_categories"):
            print(f"failures ({cfg}): {final[cfg]['failure_categories']}")


def _json_payload(final: dict) -> dict:
    keys = [k for k in ("stack", "expert", "naive") if k in final]
    payload = {k: final[k] for k in keys}
    payload["episodes"] = final["episodes"]
    payload["run"] = final.get("run", {})
    return payload


def cmd_closedloop(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else _default_out(Path(args.suite).stem)
    final = run_suite(args.suite, args.seeds, out, args.executor, args.workers, args.domain_base,
                      args.ray_address, bev=not args.no_bev, progress=not args.quiet,
                      bev_gifs=args.bev_gifs)
    if args.json:
        p = Path(args.json)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(_json_payload(final), indent=1, default=float))
    _print_summary(final)
    print(f"report: {final['paths']['report']}")
    print(f"summary: {final['paths']['summary']}")
    if args.json:
        print(f"json: {args.json}")
    if all(r["status"] != "ok" for r in final["episodes"]):
        return EXIT_ALL_FAILED
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else _default_out(DEMO_SUITE, prefix="demo")
    print(f"tps demo: closed-loop smoke suite (one short episode per scenario family), fallback "
          f"driving + expert and naive baselines, {args.workers} workers; output {out}",
          flush=True)
    final = run_suite(DEMO_SUITE, args.seeds, out, "local", args.workers, args.domain_base,
                      None, bev=True, bev_episode="stack")
    print()
    print("Per scenario, stack (fallback driving):")
    print(R.text_table(final["case_rows"].get("stack", []), R.CASE_COLUMNS))
    print()
    _print_summary(final)
    print()
    print(f"wall time: {final['run']['wall_s']:.0f} s")
    print(f"report: {final['paths']['report']}")
    gifs = [v for v in final["paths"]["bev"].values() if str(v).endswith(".gif")]
    animation = final["paths"].get("animation") or (gifs[0] if gifs else None)
    if animation:
        print(f"BEV animation: {animation}")
    return 0 if any(r["status"] == "ok" for r in final["episodes"]) else EXIT_ALL_FAILED


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tps-eval", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("closedloop", help="run a suite closed loop and score it")
    c.add_argument("--suite", required=True, help="suite name (config/suites/NAME.yaml) or path")
    c.add_argument("--seeds", default=None, help="override the suite's seeds: A:B = [A, B), A, "
                   "or A,B,C")
    c.add_argument("--json", default=None, help="write {stack, expert, naive, episodes} here")
    c.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local process pool or Ray (default local)")
    c.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"concurrent episodes (default {DEFAULT_WORKERS})")
    c.add_argument("--out", default=None, help="output directory (default runs/eval/<suite>-<ts>)")
    c.add_argument("--domain-base", type=int, default=None,
                   help=f"first ROS_DOMAIN_ID of the workers (default {default_domain_base()}; "
                   "worker i uses base + i)")
    c.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local "
                   "Ray with --workers CPUs)")
    c.add_argument("--no-bev", action="store_true", help="skip the BEV plots of failed episodes")
    c.add_argument("--bev-gifs", action="store_true", help="also an animated GIF of every failed "
                   "episode (default: a PNG of its key frame)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=cmd_closedloop)
    d = sub.add_parser("demo", help="the make-demo run: smoke suite + table + BEV animation")
    d.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    d.add_argument("--seeds", default=None, help="override the smoke suite's seeds")
    d.add_argument("--out", default=None)
    d.add_argument("--domain-base", type=int, default=None)
    d.set_defaults(func=cmd_demo)
    s = sub.add_parser("suites", help="list the suites")
    s.set_defaults(func=lambda a: print("\n".join(available_suites())) or 0)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Console-script entry (``tps-eval``)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SuiteError, ValueError) as exc:
        print(f"tps-eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tps-eval: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
