"""``python -m export all``: every model -> ONNX -> ONNX Runtime INT8 and TensorRT engines, with
parity and latency, staged beside (never over) the shipped models.

    python -m export all                                   # every format this machine can build
    python -m export all --precision fp32 int8 --target onnx onnxruntime
    python -m export all --target tensorrt --engine-cache data/engines   # a GPU + TensorRT machine
    python -m export all --synthetic --calib-frames 8 --parity-episodes 1  # smoke run, no dataset
    python -m export formats                               # the formats x precisions table, and what is here

Steps per model (detector, tokenizer, planner): torch -> ONNX FP32 (checker,
strict shape inference) -> ORT INT8 (the model's recipe) -> TensorRT FP16/INT8 (INT8: entropy
calibration cache on ``--calib-frames`` TRAIN frames; timing cache) -> torch-CUDA where a GPU but
no TensorRT; parity of every artifact against torch FP32 on ``--parity-episodes`` VAL episodes
(max/mean abs error, task-metric delta, a tolerance verdict) and latency (median/p90).

Nothing under ``models/`` is written. Each artifact is compared with the shipped file: byte-identical
ones are reported as reproduced (their manifest entry holds); others are explained and listed in
the staging folder's ``manifest.yaml`` (sha256, this command, data) for a person to ship.

Exit codes: 0 done and every judged parity row within tolerance; 1 a parity row out of tolerance
or a model failed; 2 the request cannot be done here (what is missing is printed first).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from export.formats import FORMATS, PRECISIONS, TARGETS, plan, probe_capabilities, table_markdown

EXIT_OK, EXIT_PARITY, EXIT_USAGE = 0, 1, 2
DEFAULT_MODELS = ("detector", "tokenizer", "planner")


@dataclass
class Frames:
    calib: list
    calib_source: str
    parity: list          # episodes: lists of tps_eval.detector.data.Frame
    parity_source: str


def load_frames(args, need_calib: bool) -> Frames:
    import numpy as np
    from tps_eval.detector.data import episode_frames, shard_paths, synthetic_frames

    from export.detector import calibration_frames

    if args.synthetic:
        per = max(1, args.calib_frames // 4)
        calib = [f for k in range(4) for f in synthetic_frames(k, per)] if need_calib else []
        parity = [synthetic_frames(1000 + k, args.synthetic_frames) for k in range(args.parity_episodes)]
        return Frames(calib, "synthetic frames (SMOKE: not for shipping)", parity,
                      f"{sum(map(len, parity))} synthetic frames (smoke)")
    calib = calibration_frames(args.calib_frames, args.data_root) if need_calib else []
    val = shard_paths("val", args.data_root)
    pick = np.linspace(0, len(val) - 1, min(args.parity_episodes, len(val))).round().astype(int)
    parity = [list(episode_frames(val[i])) for i in sorted(set(pick.tolist()))]
    return Frames(calib, "TRAIN-split frames", parity,
                  f"{sum(map(len, parity))} frames of {len(parity)} VAL episodes")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def render(results: dict, skipped: dict, notes: list[str], artifacts: list, stage: Path, wall_s: float) -> str:
    lines = [f"# python -m export all -> {stage}", ""]
    lines += ["## Formats x precisions", "", "| model | " + " | ".join(f"{f}/{p}" for f, p in _cells()) + " |",
              "|---|" + "---|" * len(_cells())]
    for model, res in results.items():
        if isinstance(res, str):
            lines.append(f"| {model} | " + " | ".join("-" for _ in _cells()) + f" |  ({res})")
            continue
        row = []
        for cell in _cells():
            row.append(res.cells.get(cell) or ("not here" if cell in skipped else "-"))
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    if skipped:
        lines += ["", "Not built on this machine:"]
        for why in dict.fromkeys(skipped.values()):
            cells = ", ".join(f"{f}/{p}" for (f, p), w in skipped.items() if w == why)
            lines.append(f"- {cells}: {why}")
    for n in notes:
        lines.append(f"- note: {n}")
    lines += ["", "## Artifacts (staged; models/ untouched)", "", "| manifest name | format | file | status | why |",
              "|---|---|---|---|---|"]
    for a in artifacts:
        lines.append(f"| {a.name} | {a.fmt}/{a.precision} | {a.path.relative_to(stage)} | {a.status} | "
                     f"{a.explanation} |")
    metric_cols = ["car_map_diff", "mean_ap_diff", "heatmap_prob_max_abs", "heatmap_prob_mean_abs",
                   "regression_max_abs", "regression_mean_abs", "code_agreement", "qerr_max_abs", "qerr_mean_abs",
                   "traj_l2_mean", "traj_l2_max", "l2_mean_diff_vs_fp32", "latency_ms_median", "latency_ms_p90"]
    for model, res in results.items():
        if isinstance(res, str):
            continue
        lines += ["", f"## Parity vs torch FP32: {model} ({res.source})", "",
                  "| row | " + " | ".join(metric_cols) + " | verdict |", "|---" * (len(metric_cols) + 2) + "|"]
        for name, r in res.parity.items():
            verdict = r.get("verdict", "-") + (f": {'; '.join(r['failed'])}" if r.get("failed") else "")
            if "skipped" in r:
                verdict = f"skipped: {r['skipped']}"
            lines.append(f"| {name} | " + " | ".join(_fmt(r.get(c)) for c in metric_cols) + f" | {verdict} |")
    lines += ["", f"wall time {wall_s:.0f} s"]
    return "\n".join(lines) + "\n"


def _cells() -> list[tuple[str, str]]:
    from export.formats import OFFERED

    return [c for c in ((f, p) for f in FORMATS for p in PRECISIONS) if c in OFFERED]


def cmd_formats() -> int:
    caps = probe_capabilities()
    print(table_markdown())
    for fmt in FORMATS:
        ok, why = caps.can(fmt)
        print(f"{fmt}: {'available here' if ok else why}")
    return EXIT_OK


def cmd_all(args) -> int:
    from tps_eval.detector.data import shard_paths

    from export.models import MODEL_CLASSES

    t0 = time.time()
    caps = probe_capabilities()
    unknown = [m for m in args.models if m not in MODEL_CLASSES]
    if unknown:
        print(f"export: error: unknown model(s) {unknown}; known: {sorted(MODEL_CLASSES)}", file=sys.stderr)
        return EXIT_USAGE
    have_train = bool(shard_paths("train", args.data_root))
    have_val = bool(shard_paths("val", args.data_root))
    export_plan, errors = plan(args.target, args.precision, caps, have_train=have_train, have_val=have_val,
                               synthetic=args.synthetic, data_root=args.data_root)
    models = {m: MODEL_CLASSES[m](args.threads) for m in args.models}
    results: dict = {}
    for name, m in models.items():
        why = m.missing()
        if why:
            results[name] = why
            if name != "planner" and name in args.explicit_models:
                errors.append(f"{name}: {why}")
    if errors:
        for e in errors:
            print(f"export: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    cells = set(export_plan.cells)
    stage = Path(args.staging or Path("build") / "export" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    stage.mkdir(parents=True, exist_ok=True)
    engines = Path(args.engine_cache).resolve() if args.engine_cache else stage / "engines"
    print(f"export: staging in {stage}; building {', '.join(f'{f}/{p}' for f, p in export_plan.cells)}")
    for (f, p), why in export_plan.skipped.items():
        print(f"export: {f}/{p} not built here: {why}")
    frames = load_frames(args, need_calib=any(p == "int8" for _, p in cells))
    from tps_inference.manifest import Manifest

    from export.staging import compare, shipped_entry_check, write_staging_manifest

    artifacts, failed = [], []
    for name, m in models.items():
        if name in results:
            print(f"export: {name}: skipped ({results[name]})")
            continue
        t1 = time.time()
        try:
            res = m.run(stage, cells, frames, frames.calib, args.latency_iters, engines)
        except Exception as exc:  # noqa: BLE001 - one model's failure is reported, the others go on
            traceback.print_exc()
            results[name] = f"FAILED: {type(exc).__name__}: {exc}"
            failed.append(name)
            continue
        for a in res.artifacts:
            compare(a)
        artifacts += res.artifacts
        results[name] = res
        print(f"export: {name} done in {time.time() - t1:.0f} s")
    staging_manifest = write_staging_manifest(stage, artifacts)
    problems = shipped_entry_check(artifacts, Manifest.load())
    md = render(results, export_plan.skipped, list(export_plan.notes) + problems, artifacts, stage, time.time() - t0)
    if staging_manifest:
        md += (f"\nStaged artifacts that differ from models/ are listed in {staging_manifest} (sha256, command, "
               "data); models/ and models/manifest.yaml were not changed.\n")
    else:
        md += "\nEvery exported artifact reproduces its shipped file byte for byte; models/ was not changed.\n"
    (stage / "report.md").write_text(md)
    report = {
        "command": sys.argv, "stage": str(stage), "wall_s": round(time.time() - t0, 1),
        "capabilities": caps.__dict__, "skipped": {f"{f}/{p}": w for (f, p), w in export_plan.skipped.items()},
        "artifacts": [{"name": a.name, "format": a.fmt, "precision": a.precision, "file": str(a.path),
                       "sha256": a.sha256, "status": a.status, "explanation": a.explanation,
                       "shipped": str(a.shipped) if a.shipped else None, "metrics": a.metrics} for a in artifacts],
        "parity": {n: (r.parity if not isinstance(r, str) else r) for n, r in results.items()},
        "parity_source": frames.parity_source, "synthetic": args.synthetic,
    }
    (stage / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(md)
    out_of_tol = [f"{n}: {row}" for n, r in results.items() if not isinstance(r, str)
                  for row, v in r.parity.items() if v.get("verdict") == "FAIL"]
    if out_of_tol:
        print("export: parity out of tolerance: " + "; ".join(out_of_tol), file=sys.stderr)
    return EXIT_PARITY if (failed or out_of_tol or problems) else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("formats", help="the formats x precisions table and what this machine can build")
    a = sub.add_parser("all", help="export every model")
    a.add_argument("--models", nargs="+", default=None, help=f"default: {' '.join(DEFAULT_MODELS)}")
    a.add_argument("--precision", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    a.add_argument("--target", nargs="+", default=["all"], choices=TARGETS,
                   help="formats to build; 'all' = every format, those impossible here skipped with the reason; "
                        "naming one this machine cannot build is an error")
    a.add_argument("--staging", type=Path, default=None, help="default: build/export/<timestamp>")
    a.add_argument("--engine-cache", type=Path, default=None,
                   help="TensorRT engines go here (default <staging>/engines; data/engines prefills the nodes' cache)")
    a.add_argument("--data-root", type=Path, default=None, help="dataset shards (default data/sim)")
    a.add_argument("--calib-frames", type=int, default=64, help="TRAIN frames for INT8 calibration (ORT and TensorRT)")
    a.add_argument("--parity-episodes", type=int, default=4, help="VAL episodes for the parity check")
    a.add_argument("--latency-iters", type=int, default=50, help="timed runs per artifact (after 3 warm-up runs)")
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--synthetic", action="store_true",
                   help="smoke run without a dataset: synthetic scenes for calibration and parity (never ship it)")
    a.add_argument("--synthetic-frames", type=int, default=4, help="frames per synthetic parity episode")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "formats":
        return cmd_formats()
    args.explicit_models = set(args.models or ())
    args.models = args.models or list(DEFAULT_MODELS)
    for name in ("calib_frames", "parity_episodes", "latency_iters", "threads", "synthetic_frames"):
        if getattr(args, name) < 1:
            print(f"export: error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return EXIT_USAGE
    return cmd_all(args)


if __name__ == "__main__":
    sys.exit(main())
