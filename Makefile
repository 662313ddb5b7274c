# TPS onboard stack -- every entry point.  `make demo` and `make test` are the two that matter;
# each target that needs the environment depends on `setup` (idempotent, seconds when done).
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT   := $(abspath .)
VENV   ?= $(ROOT)/.venv
PY     := $(VENV)/bin/python
# Unset so the ROS wheels' bootstrap always sets LD_LIBRARY_PATH for the venv's python, even
# when make itself was started from a bootstrapped python (ENVIRONMENT.md).
export _ROS_WHEELS_BOOTSTRAP_COMPLETE :=
# This tree, even when the shell sourced another checkout's scripts/env.sh (its TPS_ROOT made a
# fresh clone's tests resolve the other tree's graphs).
export TPS_ROOT := $(ROOT)
# Held-out seeds are never used for training or tuning (see tps_sim/splits.py).
PYTEST_ARGS ?=

.PHONY: help setup build hello demo test test-fast bench lint dataset train-detector export-detector eval-detector train-tokenizer export-tokenizer eval-tokenizer dataset-planner train-planner train-planner-route export-planner export-all gpu-check lint-docker clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup:  ## create .venv (pinned), build ros2_ws interfaces, write scripts/env.sh (idempotent)
	@bash scripts/setup.sh

build: setup  ## rebuild the workspace after editing .msg files or setup.py (alias of setup)

hello: setup  ## the smallest graph: talker -> listener over DDS for 5 s (tps-bringup)
	@$(VENV)/bin/tps-bringup config/graph/hello.yaml --duration-s 5

demo: setup  ## the stack closed loop on the demo suite (6 episodes + expert): table, report, bags, BEV GIF
	@$(PY) -m tps_eval.cli demo

test: setup  ## the full test suite (what CI runs)
	@$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup  ## unit tests only (no DDS, no closed loop)
	@$(PY) -m pytest -m "not ros and not slow" $(PYTEST_ARGS)

bench: setup  ## every benchmark in benchmarks/, tables printed, JSON under benchmarks/results/
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: setup  ## ruff
	@$(VENV)/bin/ruff check .

# The detector's data (models/manifest.yaml): 1 Hz frames of 20 s expert episodes, no camera.
DATASET_ARGS ?= --scenarios all --duration 20 --frame-stride 10 --image-every 0 -o data/sim
dataset: setup  ## the detector's datasets under data/sim: train 80, val 8, test 8 seeds per scenario (~10 min)
	@$(VENV)/bin/tps-sim dataset --split train --episodes 80 $(DATASET_ARGS)
	@$(VENV)/bin/tps-sim dataset --split val --episodes 8 $(DATASET_ARGS)
	@$(VENV)/bin/tps-sim dataset --split test --episodes 8 $(DATASET_ARGS)

# The shipped model's command (models/manifest.yaml); add TRAIN_ARGS=--ship to replace it.
# Training stops on a wall-clock budget, so a faster or busier machine trains more or fewer steps.
TRAIN_ARGS ?=
train-detector: setup  ## train the lidar detector (fixed seed, 42 min budget on 2 cores; needs make dataset)
	@$(PY) -m training.detector --epochs 10 --time-budget-min 42 --threads 2 --out-stride 2 --val-frames 64 --balance 2 $(TRAIN_ARGS)

export-detector: setup  ## ONNX + ORT INT8 (+ TensorRT where a GPU exists), parity report
	@$(PY) -m export.detector

eval-detector: setup  ## detection AP on the held-out test split
	@$(PY) -m tps_eval.cli detector --split test

# The shipped tokenizers' command (models/manifest.yaml); TRAIN_ARGS=--ship replaces them. The
# detector stays frozen (its weights are hashed before and after; training fails if they change).
train-tokenizer: setup  ## train the agent tokenizer + its untargeted ablation (fixed seed, <= 45 min on 2 cores; needs make dataset)
	@$(PY) -m training.tokenizer --episode-stride 2 --epochs 30 --time-budget-min 15 $(TRAIN_ARGS)

export-tokenizer: setup  ## features output on the detector graphs, tokenizer ONNX + ORT INT8 (+ TensorRT), parity
	@$(PY) -m export.tokenizer

eval-tokenizer: setup  ## tokenizer metrics on the held-out test split, targeted vs untargeted side by side
	@$(PY) -m tps_eval.cli tokenizer --split test

# The VLM planner (issue 14): samples at 2 Hz of TRAIN/VAL expert episodes, agent tokens from the
# frozen detector + tokenizer (ORT INT8, as on the vehicle), a 160x90 camera; TEST seeds are never stored.
PLANNER_DATA_ARGS ?= --scenarios all --duration 20
dataset-planner: setup  ## the planner's shards under data/planner: train 8, val 1 seeds per scenario
	@$(PY) -m training.planner_data --split train --episodes 8 $(PLANNER_DATA_ARGS)
	@$(PY) -m training.planner_data --split val --episodes 1 $(PLANNER_DATA_ARGS)

train-planner: setup  ## train the VLM planner by imitation (MiniLM + LoRA r=8; fixed seed, 80 min budget; needs make dataset-planner)
	@$(PY) -m training.planner --trunk minilm --lora-rank 8 --time-budget-min 80 --threads 2 $(TRAIN_ARGS)

# The shipped planner (models/manifest.yaml planner_torch): the imitation planner above fine-tuned
# with the route-anchored plan head and recovery copies, then with 48 more lead-vehicle TRAIN
# episodes (~75 min on 2 cores; needs make dataset-planner). PLANNER_INIT is the imitation
# checkpoint it started from: the previous shipped file,
#   mkdir -p runs/planner && git show 6db33d7:models/planner/planner.pt > runs/planner/s4_minilm_lora.pt
# or a `make train-planner` run. Writes runs/planner/route_keep and runs/planner/route_brake;
# TRAIN_ARGS=--ship replaces models/planner/planner.pt with the second stage.
PLANNER_INIT ?= runs/planner/s4_minilm_lora.pt
ROUTE_ARGS = --plan-prior route --recovery-copies 1 --recovery-lateral-sigma 1.2 --recovery-lateral-max 4.0 --lr 1e-4 --threads 2
train-planner-route: setup  ## the shipped planner's recipe: route-anchored fine-tune in two stages (~75 min; needs make dataset-planner)
	@$(PY) -m training.planner_data --split train --episodes 16 --first-seed-index 8 --scenarios hard_brake,cut_in,stalled --duration 20 -o data/planner_lead
	@$(PY) -m training.planner --init $(PLANNER_INIT) $(ROUTE_ARGS) --time-budget-min 40 --run route_keep
	@$(PY) -m training.planner --init runs/planner/route_keep/planner.pt --extra-data data/planner_lead $(ROUTE_ARGS) --time-budget-min 30 --seed 2 --run route_brake $(TRAIN_ARGS)

# The planner's ONNX graphs are too large to ship in git (FP32 52 MB, INT8 16 MB, word embeddings
# 23 MB): they are built here from the shipped checkpoint into build/export/planner, which the
# planner node's onnxruntime backends read (tps_planner.vlm.runtime; sha256 of the checkpoint checked).
EXPORT_PLANNER_ARGS ?=
export-planner: setup  ## planner ONNX (LoRA merged, 3 stages) + ORT INT8 per-channel/per-tensor (+ TensorRT), parity on VAL -> build/export/planner
	@$(PY) -m export.planner $(EXPORT_PLANNER_ARGS)

# Every model, every format this machine can build, staged under build/export/ (models/ untouched).
EXPORT_ARGS ?=
export-all: setup  ## every model: ONNX + ORT INT8 (+ TensorRT / torch-CUDA on a GPU), parity + latency, staged
	@$(PY) -m export all $(EXPORT_ARGS)

gpu-check: setup  ## on an NVIDIA machine: engines, parity and latency in one table; says so and exits 0 without a GPU
	@bash benchmarks/gpu_check.sh

lint-docker: setup  ## hadolint on docker/Dockerfile.* (also run by the tests)
	@$(VENV)/bin/hadolint --config docker/hadolint.yaml docker/Dockerfile.x86 docker/Dockerfile.jetson docker/Dockerfile.sim

clean:  ## remove build outputs (keeps .venv)
	rm -rf build log ros2_ws/build ros2_ws/install ros2_ws/log

distclean: clean  ## remove everything generated, .venv included
	rm -rf $(VENV) scripts/env.sh
