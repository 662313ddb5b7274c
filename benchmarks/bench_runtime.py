"""What tps_inference.Engine adds on top of a bare ONNX Runtime session (CPU).

Two models built here with onnx.helper (fixed seed): ``tiny`` (x[1, 3] -> MatMul -> Relu, i.e.
pure call overhead) and ``conv`` (bev[1, 8, 128, 128] -> 3x3 Conv to 16 channels -> Relu, a small
BEV-like tensor of 512 KiB). For each: median latency of ``session.run`` (bare ORT, same session
options), ``Engine.run`` with input checks (names, dtype, shape, NaN/inf scan) and ``Engine.run``
with ``check_finite: false``; plus the one-off load cost (sha256 + session creation).

Run:  .venv/bin/python benchmarks/bench_runtime.py [--repeats 200] [--threads 1]
Writes benchmarks/results/runtime.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from tps_inference import Engine, EngineParams
from tps_inference.manifest import sha256_file

RESULTS = Path(__file__).resolve().parent / "results" / "runtime.json"
SEED = 0
OPSET, IR_VERSION = 17, 8


def build_model(path: Path, kind: str) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    if kind == "tiny":
        w = rng.normal(size=(3, 2)).astype(np.float32)
        nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Relu", ["xw"], ["y"])]
        inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
        inits = [numpy_helper.from_array(w, "W")]
        x = rng.normal(size=(1, 3)).astype(np.float32)
    else:
        w = (rng.normal(size=(16, 8, 3, 3)) * 0.1).astype(np.float32)
        nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
        inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 128, 128])
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 128, 128])
        inits = [numpy_helper.from_array(w, "W")]
        x = rng.normal(size=(1, 8, 128, 128)).astype(np.float32)
    model = helper.make_model(helper.make_graph(nodes, kind, [inp], [out], inits),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return "x", x


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for both ORT and Engine")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("tiny", "conv"):
            path = Path(tmp) / f"{kind}.onnx"
            name, x = build_model(path, kind)
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            digest = sha256_file(path)
            t0 = time.perf_counter()
            params = EngineParams(backend="onnxruntime", intra_op_threads=args.threads, inter_op_threads=1)
            engine = Engine(path, params, sha256=digest)
            load_ms = (time.perf_counter() - t0) * 1e3
            unchecked = Engine(path, EngineParams(backend="onnxruntime", intra_op_threads=args.threads,
                                                  inter_op_threads=1, check_finite=False), sha256=digest)
            np.testing.assert_array_equal(engine({name: x})["y"], sess.run(["y"], {name: x})[0])
            t = {
                "ort": median_ms(lambda s=sess, n=name, v=x: s.run(["y"], {n: v}), args.repeats),
                "engine": median_ms(lambda e=engine, n=name, v=x: e.run({n: v}), args.repeats),
                "engine_nocheck": median_ms(lambda e=unchecked, n=name, v=x: e.run({n: v}), args.repeats),
            }
            results[kind] = {"input_shape": list(x.shape), "ort_ms": t["ort"], "engine_ms": t["engine"],
                             "engine_no_finite_check_ms": t["engine_nocheck"],
                             "overhead_ms": t["engine"] - t["ort"], "load_ms": load_ms,
                             "model_bytes": path.stat().st_size}
            rows.append((kind, x.shape, t["ort"], t["engine"], t["engine_nocheck"], t["engine"] - t["ort"], load_ms))
    load = os.getloadavg()
    conditions = (f"{os.cpu_count()} CPUs, load avg {load[0]:.2f}/{load[1]:.2f}; Python {platform.python_version()}, "
                  f"onnxruntime {ort.__version__}, numpy {np.__version__}; {args.threads} intra-op thread(s); "
                  f"median of {args.repeats} runs after 1 warm-up")
    print(f"\nRuntime overhead -- {conditions}\n")
    print(f"| {'model':5s} | {'input':18s} | {'bare ORT ms':>11s} | {'Engine ms':>9s} | {'no NaN scan ms':>14s} |"
          f" {'overhead ms':>11s} | {'load ms':>8s} |")
    print(f"|{'-' * 7}|{'-' * 20}|{'-' * 13}|{'-' * 11}|{'-' * 16}|{'-' * 13}|{'-' * 10}|")
    for kind, shape, a, b, c, d, e in rows:
        print(f"| {kind:5s} | {str(tuple(shape)):18s} | {a:11.3f} | {b:9.3f} | {c:14.3f} | {d:11.3f} | {e:8.1f} |")
    doc = {"benchmark": "bench_runtime", "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "conditions": conditions, "command": " ".join([Path(sys.executable).name, *sys.argv]), "models": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
