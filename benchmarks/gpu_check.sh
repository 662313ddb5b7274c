#!/usr/bin/env bash
# GPU check (make gpu-check): on a machine with an NVIDIA GPU, build every model's engines --
# TensorRT where the tensorrt package is importable, else the torch-CUDA backend (FP32, FP16
# autocast) --, run the parity checks and the latency benchmark of `python -m export all`, and
# print one table (model, runtime, precision, parity verdict, latency). The ONNX Runtime CPU rows
# are built beside them for comparison. On a machine without an NVIDIA GPU it says so and exits 0,
# having checked nothing.
#
#   bash benchmarks/gpu_check.sh                       # VAL/TRAIN shards under data/sim, else synthetic
#   GPU_CHECK_ARGS="--parity-episodes 2" bash benchmarks/gpu_check.sh
# Exit: 0 checked and within tolerance (or no GPU); 1 a parity row out of tolerance or a failure;
# 2 a GPU is present but this Python cannot use it (the message says why).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU on this machine (nvidia-smi absent or lists no device): nothing was checked," \
       "no engine was built. Run it where a GPU is (the CPU formats are checked by: python -m export all)."
  exit 0
fi
echo "gpu_check: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n1)"
TARGETS="$("$PY" - <<'PYEOF'
from tps_inference.device import cuda_status, tensorrt_status
trt, trt_why = tensorrt_status()
cuda, cuda_why = cuda_status()
print(f"# tensorrt: {trt_why}", flush=True)
print(f"# cuda: {cuda_why}", flush=True)
print("tensorrt onnx onnxruntime" if trt and cuda else ("torch-cuda onnx onnxruntime" if cuda else "none"))
PYEOF
)"
echo "$TARGETS" | grep '^#' | sed 's/^# /gpu_check: /'
TARGETS="$(echo "$TARGETS" | grep -v '^#')"
if [ "$TARGETS" = "none" ]; then
  echo "gpu_check: an NVIDIA GPU is here but this Python sees no CUDA device (a CPU-only torch build and no" \
       "cuda-python?): install a CUDA torch (TPS_TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 make setup)" \
       "or TensorRT + cuda-python. Nothing was checked." >&2
  exit 2
fi
DATA_ARGS=()
if ! ls data/sim/val/*/seed*.npz >/dev/null 2>&1 || ! ls data/sim/train/*/seed*.npz >/dev/null 2>&1; then
  echo "gpu_check: no dataset under data/sim: calibrating and checking on synthetic scenes (smoke quality)"
  DATA_ARGS=(--synthetic)
fi
STAGE="build/gpu_check/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$(dirname "$STAGE")"
set +e
# shellcheck disable=SC2086
"$PY" -m export all --target $TARGETS --staging "$STAGE" "${DATA_ARGS[@]}" ${GPU_CHECK_ARGS:-} > "$STAGE.log" 2>&1
CODE=$?
set -e
"$PY" - "$STAGE/report.json" <<'PYEOF'
import json, sys
from pathlib import Path
path = Path(sys.argv[1])
if not path.exists():
    sys.exit(f"gpu_check: export wrote no report ({path}); see {path.parent}.log")
rep = json.loads(path.read_text())
print(f"\n| model | row | verdict | AP diff or code agreement | max abs err | latency median ms | p90 ms |\n|---|---|---|---|---|---|---|")
for model, rows in rep["parity"].items():
    if isinstance(rows, str):
        print(f"| {model} | - | {rows} | | | | |")
        continue
    for name, r in rows.items():
        delta = r.get("mean_ap_diff", r.get("code_agreement"))
        err = r.get("heatmap_prob_max_abs", r.get("qerr_max_abs"))
        f = lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))
        verdict = r.get("skipped") and f"skipped: {r['skipped']}" or r.get("verdict", "-")
        print(f"| {model} | {name} | {verdict} | {f(delta)} | {f(err)} | {f(r.get('latency_ms_median'))} | {f(r.get('latency_ms_p90'))} |")
for cell, why in rep.get("skipped", {}).items():
    print(f"(not built: {cell}: {why})")
print(f"\nfull report: {path.parent / 'report.md'}")
PYEOF
exit "$CODE"
