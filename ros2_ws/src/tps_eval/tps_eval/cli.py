"""``tps-eval``: every evaluation of the project, one verb each.

    tps-eval closedloop --suite default --seeds 9000:9005 --json runs/default.json
    tps-eval demo                      # make demo: the demo suite, a table, report, bags, BEV GIF
    tps-eval suites                    # list config/suites/*.yaml
    tps-eval detector --split test --backend onnxruntime-int8 --json runs/detector.json
    tps-eval tokenizer --split test --json runs/tokenizer.json   # targeted vs untargeted tokenizer
    tps-eval expert-check --seeds 9000:9050 --duration 30
    tps-eval yield-probe --scenario priority --seeds 9000:9010
    tps-eval lights --seeds 9000:9010 --json runs/lights.json   # traffic-light reader accuracy
    tps-eval openloop --split test --count 10 --json runs/openloop.json   # VLM planner, open loop
    tps-eval compare runs/before.json runs/after.json   # per-episode differences of two runs
    tps-eval search --space default --budget 40 --config planner --seed 1 --json runs/search.json

Seeds (every verb, :mod:`tps_eval.seeds`): ``A:B`` is the half-open range [A, B)
(``9000:9005`` = five seeds), ``A`` one seed, ``A,B,C`` a list, ``--split NAME`` every seed of a
split. Every report and JSON carries the seeds' split label; TRAIN and VAL seeds are never
labelled held out, any seed outside TRAIN and VAL is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tps_eval import report as R
from tps_eval import seeds as S
from tps_eval.executors import EXECUTORS, default_domain_base, run_episodes
from tps_eval.runner import finalize, per_case_table
from tps_eval.suite import (
    CONFIGURATION_ORDER,
    SuiteError,
    available_suites,
    load_suite,
    plan_episodes,
    repo_root,
)

DEFAULT_WORKERS = 2
DEMO_SUITE = "demo"
DEMO_ANIMATION = "cut_in/stack"   # the episode the demo animates (CASE/CONFIGURATION)
EXIT_USAGE = 2
EXIT_ALL_FAILED = 1


def _default_out(suite: str, prefix: str = "eval") -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return repo_root() / "runs" / prefix / f"{suite}-{stamp}"


def run_suite(suite_name: str, seeds: str | dict | None, out: Path, executor: str, workers: int,
              domain_base: int | None, ray_address: str | None, bev: bool = True,
              bev_episode: str | None = None, progress: bool = True,
              bev_gifs: bool = False, configurations: str | None = None, record: bool = False,
              episode_lines: bool = False) -> dict:
    """Run a suite end to end and write its reports; returns the final dict with ``paths``.

    Args:
        seeds: overrides the suite's seeds (any ``tps_eval.seeds.parse_seeds`` input, e.g.
            ``"9000:9005"`` or ``{"split": "test"}``); None keeps the suite's.
        bev: a BEV PNG (key frame) of every failed episode.
        bev_gifs: also an animated GIF of every failed episode (~10-20 s each on 2 cores).
        bev_episode: also render a GIF of the first episode of this configuration, or of
            ``CASE/CONFIGURATION`` (the demo shows one animation even when nothing failed).
        configurations: comma-separated configurations to run instead of the suite's (the
            expert is added when a scored configuration needs its reference progress).
        record: write each episode's full topic set to ``episodes/<key>/episode.mcap``.
        episode_lines: one line per finished episode (status, wall time, collisions, route
            completion, red-light violations) above the progress bar.
    """
    from tqdm import tqdm

    suite = load_suite(suite_name, seeds, configurations)
    S.warn_if_not_held_out(suite.seed_set, f"suite {suite.name} is scored")
    out.mkdir(parents=True, exist_ok=True)
    specs = plan_episodes(suite, out)
    if record:
        specs = [dataclasses.replace(s, record=True) for s in specs]
    t0 = time.monotonic()
    load_start = host_load()
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
        elif episode_lines:
            tqdm.write(episode_line(r, sum(counts.values()), len(specs)))

    try:
        results = run_episodes(specs, executor, workers, domain_base, ray_address, on_result)
    finally:
        bar.close()
    wall_s = time.monotonic() - t0
    load_end = host_load()
    final = finalize(results)
    from tps_eval.faults import aggregate_faults

    faults = aggregate_faults(final["episodes"])
    if faults:
        final["faults"] = faults
    bev_paths: dict = {}
    first = None
    if bev:
        todo = [r for r in final["episodes"] if r["failures"] and Path(r["log_path"]).is_file()]
        first = None
        if bev_episode:
            first = next((r for r in final["episodes"]
                          if bev_episode in (r["spec"]["configuration"],
                                             f"{r['spec']['case_id']}/{r['spec']['configuration']}")
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
                "split": suite.seed_set.split, "held_out": suite.seed_set.held_out,
                "seed_set": suite.seed_set.to_dict(),
                "configurations": list(suite.configurations), "cases": len(suite.cases),
                "executor": executor, "workers": workers, "wall_s": round(wall_s, 1),
                "out": str(out), "host_cpus": os.cpu_count(),
                # the 1-min load average before and after the episodes (wall times and latencies
                # depend on it; the synchronous loop's driving does not)
                "host_load_1min": {"start": load_start, "end": load_end},
                "finished_utc": datetime.now(UTC).isoformat(timespec="seconds")}
    from tps_eval.monitor_calib import run_monitor_summary

    try:
        monitor = run_monitor_summary(out, final)
    except Exception as exc:  # noqa: BLE001 - a summary failure never loses the run
        monitor = None
        tqdm.write(f"monitor summary failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    if monitor:
        final["monitor"] = monitor
    case_rows = {cfg: per_case_table(final, cfg) for cfg in suite.configurations}
    paths = R.write_report(final, run_info, out, case_rows, bev_paths)
    final["run"] = run_info
    final["paths"] = dict(paths, bev=bev_paths)
    if bev and first is not None and first.get("bev", {}).get("gif"):
        final["paths"]["animation"] = first["bev"]["gif"]
    final["case_rows"] = case_rows
    return final


def host_load() -> float | None:
    """The host's 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def load_text(run: dict) -> str:
    """``host load 0.3 -> 2.1`` for a run's ``host_load_1min``, with a warning when the host had
    more runnable work than CPUs besides the run (its timings are then above an idle host's)."""
    load = run.get("host_load_1min") or {}
    start, end, cpus = load.get("start"), load.get("end"), run.get("host_cpus") or 1
    if start is None:
        return "host load unknown"
    text = f"host load {start:.1f} -> {end:.1f}" if end is not None else f"host load {start:.1f}"
    if start > cpus:   # the run's own workers are not in the start figure
        text += (f" (busy before the run started: over {cpus} CPUs; wall times and latencies are "
                 f"above an idle host's)")
    return text


def episode_line(r: dict, done: int, total: int) -> str:
    """One finished episode as a progress line (EP / PDMS need the expert: in the final table)."""
    s, m = r["spec"], r.get("metrics") or {}
    key = f"{s['case_id']}-s{s['seed']}-{s['configuration']}"
    text = f"[{done}/{total}] {key}: {r['status']}, {r.get('wall_s', 0.0):.0f} s wall"
    if m:
        text += (f"; at-fault collisions {m.get('at_fault_collisions')}, route completion "
                 f"{R.fmt(m.get('route_completion'), '{:.0%}')}, red-light violations "
                 f"{m.get('red_light_violations', 0)}, end {m.get('end_reason') or '-'}")
    return text


def demo_text(final: dict) -> str:
    """What ``tps-eval demo`` prints after the run: the per-case table of the stack, the
    aggregates per configuration, the wall time, and where the report, bags and animation are."""
    lines = ["Per case, stack (sim_stack.yaml, the full stack; the monitor picks planner or fallback per frame):",
             R.text_table(final["case_rows"].get("stack", []), R.CASE_COLUMNS), "",
             _summary_table(final)]
    if final.get("perception_rows"):
        lines += ["", "Perception in the loop, stack episodes (from the bags; the synchronous loop waits "
                  "for the controller, not for perception):",
                  R.text_table(final["perception_rows"], PERCEPTION_COLUMNS)]
    for cfg in CONFIGURATION_ORDER:
        if cfg in final and final[cfg].get("failure_categories"):
            lines.append(f"failures ({cfg}): {final[cfg]['failure_categories']}")
    run = final.get("run", {})
    lines += ["", f"wall time: {run.get('wall_s', 0.0):.0f} s for {len(final['episodes'])} episodes "
              f"({run.get('workers')} workers, {run.get('host_cpus')} CPUs; {load_text(run)})",
              f"report: {final['paths']['report']}", f"summary: {final['paths']['summary']}"]
    bags = [r for r in final["episodes"]
            if (Path(r.get("episode_dir") or "") / "episode.mcap").is_file()]
    if bags:
        lines.append(f"bags: {len(bags)} x {Path(bags[0]['episode_dir']).parent}/<episode>/episode.mcap "
                     f"(replay one: tps-replay {Path(bags[0]['episode_dir']) / 'episode.mcap'} "
                     f"--out runs/replay/demo)")
    gifs = [v for v in final["paths"].get("bev", {}).values() if str(v).endswith(".gif")]
    animation = final["paths"].get("animation") or (gifs[0] if gifs else None)
    if animation:
        lines.append(f"BEV animation: {animation}")
    return "\n".join(lines)


PERCEPTION_COLUMNS = (("case", "case", "{}"), ("lidar_frames", "lidar frames", "{:d}"),
                      ("detection_frames", "DetectedAgents", "{:d}"),
                      ("answered_share", "answered", "{:.0%}"),
                      ("frames_with_agents", "with agents", "{:d}"),
                      ("fault_frames", "fault injected", "{:d}"))


def perception_rows(final: dict) -> list[dict]:
    """:func:`tps_eval.stack_state.perception_row` of every recorded stack episode."""
    from tps_eval.stack_state import perception_row

    rows = []
    for r in final["episodes"]:
        bag = Path(r.get("episode_dir") or "") / "episode.mcap"
        if r["spec"]["configuration"] != "stack" or not bag.is_file():
            continue
        try:
            rows.append(dict(perception_row(bag), case=r["spec"]["case_id"]))
        except Exception as exc:  # noqa: BLE001 - a bag that cannot be read loses one row, said so
            print(f"perception row of {bag}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return rows


def _summary_table(final: dict) -> str:
    shown = ("episodes", "errors", "collision_rate", "at_fault_per_km", "route_completion",
             "pdm_score", "pdm_score_tlc", "red_light_violations", "fallback_share",
             "e2e_latency_p50_ms", "e2e_latency_p99_ms")
    cols = (("configuration", "configuration", "{}"),) + tuple(
        c for key in shown for c in R.AGG_COLUMNS if c[0] == key)
    return R.text_table(R.aggregate_rows(final), cols)


def _print_summary(final: dict) -> None:
    print(_summary_table(final))
    for cfg in CONFIGURATION_ORDER:
        if cfg in final and final[cfg].get("failure_categories"):
            print(f"failures ({cfg}): {final[cfg]['failure_categories']}")


def _json_payload(final: dict) -> dict:
    keys = [k for k in CONFIGURATION_ORDER if k in final]
    payload = {k: final[k] for k in keys}
    payload["episodes"] = final["episodes"]
    payload["run"] = final.get("run", {})
    if final.get("faults"):
        payload["faults"] = final["faults"]
    if final.get("monitor"):
        payload["monitor"] = final["monitor"]
    return payload


def _seed_override(args: argparse.Namespace) -> str | dict | None:
    """``--seeds`` / ``--split`` as a suite seed override (None: the suite's own seeds)."""
    if args.seeds:
        return args.seeds
    return {"split": args.split} if args.split else None


def cmd_closedloop(args: argparse.Namespace) -> int:
    if args.list:   # the planned episodes, nothing run
        from tps_eval.faults import episode_list_text

        suite = load_suite(args.suite, _seed_override(args), args.configurations)
        print(episode_list_text(plan_episodes(suite, Path(args.out or "runs/eval/list"))), end="")
        return 0
    out = Path(args.out) if args.out else _default_out(Path(args.suite).stem)
    final = run_suite(args.suite, _seed_override(args), out, args.executor, args.workers, args.domain_base,
                      args.ray_address, bev=not args.no_bev, progress=not args.quiet,
                      bev_gifs=args.bev_gifs, configurations=args.configurations, record=args.record)
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


def cmd_search(args: argparse.Namespace) -> int:
    from tps_eval.search import report as SR
    from tps_eval.search.space import load_space
    from tps_eval.search.study import SearchRun, write_json

    space = load_space(args.space)
    out = Path(args.out) if args.out else repo_root() / "runs" / "search" / (
        f"{space.name}-{args.config or space.configuration}-s{args.seed}")
    arms = ("search",) if args.no_random else ("search", "random")
    run = SearchRun(space, args.budget, args.seed, out, args.config, args.executor, args.workers,
                    args.ray_address, args.domain_base, args.sampler, arms,
                    progress=not args.quiet, exploit=args.exploit)
    print(f"tps-eval search: space {space.name} ({space.source}), configuration "
          f"{run.configuration}, budget {args.budget} per arm ({', '.join(arms)}), seed "
          f"{args.seed}, {args.executor} x {args.workers}; output {out} (resumable: run the same "
          f"command again)", flush=True)
    t0 = time.monotonic()
    summary = run.run()
    summary = SR.write_report(summary, space, out, gifs=not args.no_gifs,
                              wall_s=time.monotonic() - t0)
    if args.json:
        p = Path(args.json)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_json(p, summary)
    line = f"failures found: search {summary['failures_found']} of {summary['episodes']}"
    if "failures_found_random" in summary:
        line += (f", random {summary['failures_found_random']} of {summary['episodes_random']}"
                 f" (ratio {summary['ratio'] if summary['ratio'] is not None else '-'})")
    print(line)
    print(f"report: {summary['paths']['report']}")
    print(f"failures suite: {summary['paths']['failures_suite'] or 'none (no failures)'}")
    if args.json:
        print(f"json: {args.json}")
    return 0


def ensure_planner_export(suite_name: str, log=print) -> str | None:
    """When the suite's planner runs an exported backend (its ``node_parameters``), make sure the
    export of the shipped checkpoint is there and current (sha256 of the checkpoint, every file's
    sha256): otherwise run ``python -m export.planner --no-parity --no-per-tensor`` (~20 s on one
    core; the parity report needs VAL data a fresh clone does not have). Returns the backend, or
    None when the suite's planner runs torch.

    Raises:
        RuntimeError: the export failed (its output's tail named).
    """
    import subprocess

    suite = load_suite(suite_name)
    backends = {str((c.node_parameters.get("planner") or {}).get("backend", "")) for c in suite.cases}
    backend = next((b for b in sorted(backends) if b.startswith("onnxruntime")), None)
    if backend is None:
        return None
    from tps_planner.vlm.runtime import PlannerRuntime

    root = repo_root()
    try:
        PlannerRuntime(root / "models" / "planner" / "planner.pt", backend=backend, threads=1)
        return backend
    except (ValueError, OSError) as exc:
        log(f"tps demo: the planner's {backend} export is not usable ({exc}); exporting it "
            f"(python -m export.planner, ~20 s)", flush=True)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "export.planner", "--no-parity", "--no-per-tensor", "--threads", "2"],
                          cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"python -m export.planner failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    PlannerRuntime(root / "models" / "planner" / "planner.pt", backend=backend, threads=1)
    log(f"tps demo: planner exported in {time.monotonic() - t0:.0f} s (build/export/planner)", flush=True)
    return backend


def cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else _default_out(args.suite, prefix="demo")
    t0 = time.monotonic()
    ensure_planner_export(args.suite)
    print(f"tps demo: the stack's graph closed loop (suite {args.suite}: config/suites/"
          f"{args.suite}.yaml), each episode beside SUMO's expert of the same seed, "
          f"{args.workers} workers{', every episode recorded' if not args.no_record else ''}; "
          f"output {out}", flush=True)
    final = run_suite(args.suite, _seed_override(args), out, "local", args.workers, args.domain_base,
                      None, bev=True, bev_episode=args.animate, record=not args.no_record,
                      episode_lines=True)
    final["perception_rows"] = perception_rows(final)
    print()
    print(demo_text(final))
    print(f"demo total: {time.monotonic() - t0:.0f} s (episodes, scoring, BEV animation)")
    return 0 if any(r["status"] == "ok" for r in final["episodes"]) else EXIT_ALL_FAILED


def cmd_detector(args: argparse.Namespace) -> int:
    from tps_eval.detector import evaluate

    return evaluate.run(args)


def cmd_tokenizer(args: argparse.Namespace) -> int:
    from tps_eval.tokenizer import evaluate

    return evaluate.run(args)


def cmd_expert_check(args: argparse.Namespace) -> int:
    from tps_eval import expert_check

    return expert_check.run(args, S.from_args(args, default=expert_check.DEFAULT_SEEDS))


def cmd_lights(args: argparse.Namespace) -> int:
    from tps_eval import lights

    return lights.run(args, S.from_args(args, default=lights.DEFAULT_SEEDS))


def cmd_openloop(args: argparse.Namespace) -> int:
    from tps_eval.openloop import evaluate

    return evaluate.run(args)


def cmd_calibrate_monitor(args: argparse.Namespace) -> int:
    from tps_eval import monitor_calib

    return monitor_calib.run(args)


def cmd_compare(args: argparse.Namespace) -> int:
    from tps_eval import compare

    return compare.run(args)


def cmd_yield_probe(args: argparse.Namespace) -> int:
    from tps_eval import yield_probe

    return yield_probe.run(args, S.from_args(args, default=yield_probe.DEFAULT_SEEDS))


SEEDS_HELP = f"""seeds:
  {S.SEED_SYNTAX}; --split NAME = every seed of the split.
  {S.SPLITS_TEXT}.
  Every report/JSON records the seeds' split and whether they are held out."""

CLOSEDLOOP_EPILOG = f"""examples:
  tps-eval closedloop --suite default --seeds 9000:9005 --json runs/default.json
  tps-eval closedloop --suite smoke --executor ray --workers 4
  tps-eval closedloop --suite debris --split val --no-bev
  tps-eval closedloop --suite default --seeds 1000:1010 --configurations fallback,expert,naive

{SEEDS_HELP}

configurations: stack (the full stack: perception, VLM planner, monitor, fallback, arbiter,
  controller), planner (the same without the monitor), shadow (the planner drives, the monitor
  judges unheard and records: calibration), perception (perception beside the fallback),
  fallback (the fallback alone), expert (SUMO drives: the EP reference), naive (obstacles
  ignored); a scored configuration brings the expert along.

output (--out, default runs/eval/<suite>-<UTC timestamp>/):
  episodes/<case>-s<seed>-<configuration>/  episode_log.npz, graph.log, metrics.json
  summary.json   {{"stack", "fallback", "expert", "naive", "episodes", "run"}} (each configuration
                 run; run: suite, seeds, split,
                 held_out, seed_set, executor, workers, wall_s, ...)
  report.md      aggregates per configuration, per-case tables, failed episodes
  bev/<episode>.png   key frame of every failed episode (--bev-gifs: also a GIF)
  --json PATH    the summary.json content (without the per-case rows)
metric definitions: docs/METRICS.md"""

DEMO_EPILOG = f"""examples:
  tps-eval demo                   (= make demo)
  tps-eval demo --workers 1 --seeds 9001
  tps-eval demo --suite smoke --animate roundabout/stack --no-record

{SEEDS_HELP}

output (--out, default runs/demo/<suite>-<UTC timestamp>/): the closedloop layout with every
episode recorded (episodes/<key>/episode.mcap, replayable with tps-replay), plus a GIF of one
stack episode with the stack's state drawn (detections, driving source, monitor, detector status);
one line per finished episode, then a table per case and per configuration on stdout."""

DETECTOR_EPILOG = f"""examples:
  tps-eval detector --split test                           (= make eval-detector)
  tps-eval detector --split test --backend onnxruntime-int8 --traffic-only --json runs/det.json
  tps-eval detector --seeds 9000:9002 --scenarios cut_in,merge --duration 10

{SEEDS_HELP}
  --split reads the stored shards data/sim/<split>/<scenario>/seed<N>.npz (tps-sim dataset);
  --seeds generates fresh episodes (nothing stored).

output: a Markdown table on stdout; --json PATH writes backend, source, frames, car_map,
  mean_ap, per_clutter, overall {{ap, map, tp, num_gt, mean_ap}}, latency_ms_median, max_range_m,
  dist_ths_m, model_dir, ground_truth, eval_wall_s, seeds, split, held_out; the Markdown goes
  next to it (--md to choose). Definitions: docs/METRICS.md, "Detection"."""

TOKENIZER_EPILOG = f"""examples:
  tps-eval tokenizer --split test                          (= make eval-tokenizer)
  tps-eval tokenizer --seeds 9000:9002 --json runs/tokenizer.json
  tps-eval tokenizer --split test --backend onnxruntime-int8 --json runs/tokenizer_int8.json
  tps-eval tokenizer --seeds 9000 --scenarios cut_in,highway --duration 10

{SEEDS_HELP}
  --split reads the stored shards data/sim/<split>/<scenario>/seed<N>.npz (tps-sim dataset);
  --seeds generates fresh episodes (nothing stored).

The targeted tokenizer and its untargeted ablation (models/tokenizer/) run side by side on the
same detector features in one pass; faults (phantom cars, pose noise) are injected after the
detector, as in the perception node.

output: a Markdown report on stdout; --json PATH writes agent_recon_error_targeted,
  agent_recon_error_untargeted, agent_recon_error_reduction, agent_code_share_targeted,
  agent_code_share_untargeted, class_acc_ratio, perplexity, novelty_auroc, targets (each
  acceptance threshold, value, met), variants {{targeted, untargeted}} (codebook use, read-outs,
  quantisation-error distributions per clutter level and fault, AUROCs), frames, agents, backend,
  source, seeds, split, held_out; the Markdown goes next to it (--md to choose).
  Definitions: ros2_ws/src/tps_eval/README.md, "Tokenizer metrics"."""

OPENLOOP_EPILOG = f"""examples:
  tps-eval openloop --split test --count 10 --json runs/openloop_test.json
  tps-eval openloop --seeds 9000:9003 --scenarios lights,merge --paraphrases config/paraphrases/example.yaml
  tps-eval openloop --split test --count 10 --ablation untargeted_tokens=runs/planner/untargeted/planner.pt \\
      --ablation camera_off=runs/planner/no_camera/planner_no_camera.pt --json runs/openloop_ablations.json

{SEEDS_HELP}
  Default --split test. Episodes (every scenario x seed) are simulated and run through the frozen
  detector + tokenizer on the fly, in memory (TEST episodes are never stored).

output: a Markdown table on stdout (planner, constant-velocity and follow-the-route baselines,
  ablations side by side; per scenario; instruction following per command); --json PATH writes
  l2_1s, l2_2s, l2_3s, l2_mean (mean of the at-t L2), l2_avg_* (averaged up to t), collision_rate
  (+ per horizon, any), min_ade_3s, min_fde_3s, miss_rate, intent_acc, light_state_acc,
  instruction_following, per_scenario, baselines {{constant_velocity, follow_route}}, ablations
  {{scratch_trunk, untargeted_tokens, camera_off}} (null when not given), counts, seeds, split,
  held_out, definitions; the Markdown goes next to it (--md to choose).
  Definitions: ros2_ws/src/tps_eval/tps_eval/openloop/metrics.py."""

LIGHTS_EPILOG = f"""examples:
  tps-eval lights --seeds 9000:9010 --json runs/lights/reader_test.json
  tps-eval lights --seeds 1000:1010 --all-heads --density 2 --clutter high
  tps-eval lights --seeds 9000:9010 --camera-width 1280 --camera-height 720

{SEEDS_HELP}

SUMO's expert drives the signalised scenarios; the front camera renders every --every-th step and
the classical reader (the node's core) reads the heads on the route (--all-heads: every head).
output: a Markdown report on stdout (accuracy per distance band for visible, partly occluded and
  occluded in-view heads; wrong colours; the reader's verdicts); --json PATH writes summary
  (accuracy_in_band_visible, wrong_colour_total, ...), bands, scenarios, seeds, split, held_out,
  frames, samples, camera; the Markdown goes next to it. Exit 1 when the accuracy in 10-60 m is
  below 99 % or any colour was read wrong. Definitions: docs/METRICS.md, "Traffic-light reader"."""

EXPERT_EPILOG = f"""examples:
  tps-eval expert-check                              (first ten TEST seeds x 9 scenarios, 30 s)
  tps-eval expert-check --seeds 9000:9050 --json runs/expert_check.json
  tps-eval expert-check --scenarios roundabout,stalled --seeds 9006,9035

{SEEDS_HELP}

output: a table per scenario and one line per collision on stdout (kinds and fault by the
  evaluation's taxonomy, docs/METRICS.md "Collisions and fault"); --json PATH writes
  {{seeds, duration_s, density, scenarios, episodes: [...]}}. Exit 1 on an at-fault collision
  or a failed reset."""

YIELD_EPILOG = f"""examples:
  tps-eval yield-probe --scenario priority
  tps-eval yield-probe --scenario roundabout --seeds 9000:9010 --density 2

{SEEDS_HELP}

output: one line per seed (collisions as kind/ego-fault|foe-fault, foe hard-brake steps,
  progress) and a summary line on stdout."""


def _verb(sub, name: str, help_text: str, epilog: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tps-eval", description=__doc__.split("\n\n")[0],
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]).replace("``", ""),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="VERB")
    c = _verb(sub, "closedloop", "run a suite closed loop and score it", CLOSEDLOOP_EPILOG)
    c.add_argument("--suite", required=True, help="suite name (config/suites/NAME.yaml) or path")
    S.add_arguments(c, default="the suite's own seeds")
    c.add_argument("--json", default=None, help="write {<configuration>: aggregates, episodes, run} here")
    c.add_argument("--configurations", default=None,
                   help="comma-separated subset of stack,planner,shadow,perception,fallback,expert,naive "
                        "(default: the suite's)")
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
    c.add_argument("--record", action="store_true",
                   help="write each episode's topics (sensors, stack outputs, ground truth, /tf) to "
                        "episodes/<key>/episode.mcap, replayable with tps-replay")
    c.add_argument("--list", action="store_true",
                   help="list the planned episodes (fault type, onset) and their count; run nothing")
    c.set_defaults(func=cmd_closedloop)
    d = _verb(sub, "demo", "the make-demo run: demo suite + table + bags + BEV animation", DEMO_EPILOG)
    d.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    S.add_arguments(d, default="the smoke suite's seeds")
    d.add_argument("--out", default=None)
    d.add_argument("--domain-base", type=int, default=None)
    d.add_argument("--suite", default=DEMO_SUITE, help=f"suite (default {DEMO_SUITE})")
    d.add_argument("--animate", default=DEMO_ANIMATION,
                   help=f"episode to animate: CONFIGURATION or CASE/CONFIGURATION (default {DEMO_ANIMATION})")
    d.add_argument("--no-record", action="store_true", help="do not record the episodes' bags")
    d.set_defaults(func=cmd_demo)
    s = _verb(sub, "suites", "list the suites (config/suites/*.yaml)",
              "example:\n  tps-eval suites")
    s.set_defaults(func=lambda a: print("\n".join(available_suites())) or 0)
    from tps_eval.detector.evaluate import add_arguments as detector_arguments

    t = _verb(sub, "detector", "detection AP / TP errors of the lidar detector (nuScenes devkit)",
              DETECTOR_EPILOG)
    detector_arguments(t)
    t.set_defaults(func=cmd_detector)
    from tps_eval.tokenizer.evaluate import add_arguments as tokenizer_arguments

    tk = _verb(sub, "tokenizer", "agent tokenizer: codebook use, reconstruction from codes, novelty AUROC "
               "(targeted vs untargeted)", TOKENIZER_EPILOG)
    tokenizer_arguments(tk)
    tk.set_defaults(func=cmd_tokenizer)
    from tps_eval import expert_check, yield_probe

    e = _verb(sub, "expert-check", "SUMO's expert (the EP reference) must cause no collision",
              EXPERT_EPILOG)
    expert_check.add_arguments(e)
    e.set_defaults(func=cmd_expert_check)
    y = _verb(sub, "yield-probe", "do SUMO foes yield to an external ego in junctions?",
              YIELD_EPILOG)
    yield_probe.add_arguments(y)
    y.set_defaults(func=cmd_yield_probe)
    from tps_eval import lights

    li = _verb(sub, "lights", "classical traffic-light reader: state accuracy per distance band",
               LIGHTS_EPILOG)
    lights.add_arguments(li)
    li.set_defaults(func=cmd_lights)
    from tps_eval.openloop.evaluate import add_arguments as openloop_arguments

    ol = _verb(sub, "openloop", "VLM planner open loop: L2, collisions, forecasts, instruction following, "
               "baselines and ablations", OPENLOOP_EPILOG)
    openloop_arguments(ol)
    ol.set_defaults(func=cmd_openloop)
    from tps_eval import monitor_calib

    mc = _verb(sub, "calibrate-monitor", "confidence monitor: conformal thresholds from shadow-mode runs "
               "(fit on VAL seeds) and the achieved miss / false-alarm rates (evaluate on TEST)",
               "examples:\n  tps-eval closedloop --suite monitor_calibration --out runs/monitor/val\n"
               "  tps-eval calibrate-monitor runs/monitor/val --fit models/monitor/calibration.json\n"
               "  tps-eval calibrate-monitor runs/monitor/test --evaluate models/monitor/calibration.json")
    monitor_calib.add_arguments(mc)
    mc.set_defaults(func=cmd_calibrate_monitor)
    from tps_eval.search.study import EXPLOIT_PER_FAILURE, SAMPLERS

    se = _verb(sub, "search", "failure-mode-driven scenario search: an optimiser minimising the safety "
               "margin vs uniform random sampling, same budget (resumable)",
               "examples:\n  tps-eval search --space default --budget 40 --config planner --seed 1 "
               "--json runs/search.json\n  tps-eval search --space config/search/default.yaml "
               "--budget 40 --seed 1 --executor local   # no Ray\n\n"
               "Writes <out>/search.json, report.md, failures.yaml (the failures as a suite),\n"
               "boundary/*.png and bev/*.gif; <out>/study.db holds the optuna studies, so the same\n"
               "command resumes an interrupted search. Seeds: tps_sim.splits.SEARCH (5000..5999).")
    se.add_argument("--space", required=True, help="space name (config/search/NAME.yaml) or path")
    se.add_argument("--budget", type=int, required=True, help="episodes per arm")
    se.add_argument("--config", default=None, help="configuration searched (default: the space's; "
                    "e.g. planner = the planner without the monitor)")
    se.add_argument("--seed", type=int, default=0, help="search seed (samplers and episode seeds)")
    se.add_argument("--json", default=None, help="also write the summary here")
    se.add_argument("--out", default=None, help="output folder (default runs/search/<space>-<config>-s<seed>)")
    se.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="the optimiser (default tpe)")
    se.add_argument("--exploit", type=int, default=EXPLOIT_PER_FAILURE,
                    help=f"neighbours of each failure queued in the search arm (a near miss: 1; "
                         f"default {EXPLOIT_PER_FAILURE}; 0 = the optimiser alone)")
    se.add_argument("--no-random", action="store_true", help="skip the uniform random arm")
    se.add_argument("--executor", choices=EXECUTORS, default="ray",
                    help="ray (default: a local Ray, or --ray-address) or the local process pool")
    se.add_argument("--workers", type=int, default=1, help="concurrent episodes (default 1)")
    se.add_argument("--ray-address", default=None, help="Ray cluster address")
    se.add_argument("--domain-base", type=int, default=None, help="first ROS_DOMAIN_ID of the workers")
    se.add_argument("--no-gifs", action="store_true", help="skip the worst cases' BEV GIFs")
    se.add_argument("--quiet", action="store_true", help="no progress bar")
    se.set_defaults(func=cmd_search)
    k = _verb(sub, "compare", "per-episode differences between two closedloop --json files",
              "examples:\n  tps-eval compare runs/before.json runs/after.json\n"
              "  tps-eval compare a.json b.json --rel-tol 1e-9\n\n"
              "Deterministic metrics only (latencies and recorder counts are wall-clock). Exit 0 when\n"
              "the runs agree, 1 when any episode differs.")
    k.add_argument("a", help="first run (closedloop --json)")
    k.add_argument("b", help="second run")
    k.add_argument("--rel-tol", type=float, default=0.0, help="relative tolerance for floats (default 0: exact)")
    k.set_defaults(func=cmd_compare)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Console-script entry (``tps-eval``)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SuiteError, S.SeedError, ValueError) as exc:
        print(f"tps-eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tps-eval: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
