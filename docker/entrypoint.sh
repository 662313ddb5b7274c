#!/usr/bin/env bash
# Vehicle image entry point: source ROS + the workspace, build/validate the model engines into the
# engine cache (a mounted volume: $TPS_ENGINE_CACHE) on the first start -- a later start finds them
# valid and only checks their keys; a stale engine (other ONNX, TensorRT or GPU) is rebuilt --, then
# run the command (default: the stack under ros2 launch).
#   TPS_BUILD_ENGINES=0   skip the engine step (e.g. for the simulator container)
#   TPS_GRAPH=stack       the graph whose model nodes build their engines
set -euo pipefail
# shellcheck disable=SC1091
source "/opt/ros/${ROS_DISTRO}/setup.bash"
# shellcheck disable=SC1091
source /opt/tps/install/setup.bash
if [ "${TPS_BUILD_ENGINES:-1}" = "1" ]; then
  mkdir -p "${TPS_ENGINE_CACHE}"
  echo "[entrypoint] building/validating model engines into ${TPS_ENGINE_CACHE} (first start: minutes)"
  ros2 run tps_bringup tps-bringup "${TPS_ROOT}/config/graph/${TPS_GRAPH:-stack}.yaml" --build-only \
      --arg "backend=${TPS_BACKEND:-auto}" --arg "precision=${TPS_PRECISION:-int8}"
fi
exec "$@"
