"""Deployment arguments -> graph overrides, shared by the ROS 2 launch files (``launch/*.launch.py``
in this package's share) and ``tps-bringup`` (``--set`` / ``--build-only``). ROS-free.

A launch argument never names a node: it applies to every node of the graph that has the
parameter (``backend`` -> every node whose schema declares ``backend``) or the remap
(``lidar_topic`` -> every node remapping ``~/input/points``), so graphs and launch files cannot
drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from tps_bringup.graph import Graph, NodeSpec, node_schema

# launch argument -> the node-relative topic it sets, with its description
TOPIC_ARGUMENTS: dict[str, tuple[str, str]] = {
    "lidar_topic": ("~/input/points", "lidar sensor_msgs/PointCloud2 (x, y, z, intensity)"),
    "odometry_topic": ("~/input/odometry", "ego nav_msgs/Odometry (frame map, child the vehicle frame)"),
    "camera_topic": ("~/input/image", "front camera sensor_msgs/Image"),
    "camera_info_topic": ("~/input/camera_info", "front camera sensor_msgs/CameraInfo"),
    "route_topic": ("~/input/route", "route nav_msgs/Path in map (latched)"),
    "lane_map_topic": ("~/input/lane_map", "map knowledge tps_msgs/LaneMap (latched)"),
    "traffic_light_info_topic": ("~/input/traffic_light_info",
                                 "carla_msgs/CarlaTrafficLightInfoList (map knowledge, latched)"),
    "instruction_topic": ("~/input/instruction", "driving instruction tps_msgs/DrivingInstruction (latched)"),
    "control_topic": ("~/output/control", "output carla_msgs/CarlaEgoVehicleControl"),
}
# precision -> parameters of the model nodes (by executable). int8: the ORT INT8 graph on CPUs, and
# its manifest recipe (FP32 ONNX + INT8 calibration cache) under TensorRT.
PRECISION_PARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "perception_node": {
        "int8": {"model_name": "detector_int8", "trt_precision": "int8"},
        "fp16": {"model_name": "detector_fp32", "trt_precision": "fp16"},
        "fp32": {"model_name": "detector_fp32", "trt_precision": "fp32"},
    },
}
PRECISIONS = ("int8", "fp16", "fp32")
BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
MANIFEST_ENV = "TPS_MANIFEST"
ENGINE_CACHE_ENV = "TPS_ENGINE_CACHE"
BUILD_ONLY_PARAMETER = "build_only"

# launch argument -> (default, description); the stack launch files declare these
STACK_ARGUMENTS: dict[str, tuple[str, str]] = {
    "backend": ("auto", "model runtime of the model nodes: auto (TensorRT where it exists, else ONNX Runtime) | "
                        "onnxruntime | tensorrt | torch ($TPS_BACKEND sets the default)"),
    "precision": ("int8", "model precision: int8 (ORT INT8 on CPUs, TensorRT INT8 with its calibration cache) | "
                          "fp16 (TensorRT FP16; ORT FP32 on CPUs) | fp32 ($TPS_PRECISION sets the default: "
                          "fp16 in the vehicle images)"),
    "models_dir": ("", "folder holding manifest.yaml and the model files ('' = the repository's models/)"),
    "engine_cache": ("", "TensorRT engine cache directory ('' = $TPS_ENGINE_CACHE, else data/engines)"),
    "build_only": ("false", "true: start only the model nodes, build/validate their engines, report and exit "
                            "(0 = every engine ready)"),
    "rebuild_stale_engine": ("true", "a cached engine built for another ONNX/TensorRT/GPU is rebuilt (true) or "
                                     "refused (false); never used"),
    "use_sim_time": ("", "follow /clock ('' = the graph's own setting: false for the vehicle graph, true for CARLA)"),
    "namespace": ("", "ROS namespace of every node ('' = none)"),
    "lidar_frame": ("", "frame_id of the lidar clouds perception accepts ('' = the parameter file's)"),
    **{name: ("", f"{what} ('' = the graph's topic)") for name, (_, what) in TOPIC_ARGUMENTS.items()},
}


# launch arguments whose default an environment variable sets (the vehicle images set
# TPS_PRECISION=fp16: TensorRT INT8 needs a calibration cache the manifest does not list yet, and
# docker/entrypoint.sh builds the engines with the same variables, so both agree)
ARGUMENT_ENV: dict[str, str] = {"backend": "TPS_BACKEND", "precision": "TPS_PRECISION"}


def argument_defaults(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The launch arguments' defaults: ``STACK_ARGUMENTS``'s, ``ARGUMENT_ENV``'s variables first.

    Raises:
        ValueError: a variable holds a value the argument does not take (names both).
    """
    environ = os.environ if environ is None else environ
    out = {name: default for name, (default, _) in STACK_ARGUMENTS.items()}
    allowed = {"backend": BACKENDS, "precision": PRECISIONS}
    for name, var in ARGUMENT_ENV.items():
        value = environ.get(var, "").strip()
        if value:
            if value not in allowed[name]:
                raise ValueError(f"${var}={value!r}: {name} must be one of {list(allowed[name])}")
            out[name] = value
    return out


def repo_root() -> Path:
    """The repository with ``config/graph`` (``$TPS_ROOT``, else found from this file: an editable
    or --symlink-install install resolves into the source tree)."""
    env = os.environ.get("TPS_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "config" / "graph").is_dir() and (parent / "ros2_ws").is_dir():
            return parent
    raise FileNotFoundError(f"cannot find the repository (config/graph) from {here}; set TPS_ROOT")


def graph_file(name: str, root: Path | None = None) -> Path:
    """``config/graph/<name>.yaml`` (a path is returned as it is)."""
    if name.endswith(".yaml") or "/" in name:
        return Path(name)
    return (root or repo_root()) / "config" / "graph" / f"{name}.yaml"


def _truthy(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def stack_overrides(graph_data: Mapping[str, Any], args: Mapping[str, str], root: Path) -> list[str]:
    """``--set`` overrides (tps-bringup syntax) for the deployment ``args`` on a raw graph.

    Raises:
        ValueError: a bad value (names the argument and the allowed values).
    """
    out: list[str] = []
    nodes = [n for n in graph_data.get("nodes") or [] if isinstance(n, dict)]
    value = {k: str(v) for k, v in args.items() if v is not None}

    def has_param(node: dict, name: str) -> bool:
        schema, _ = node_schema(str(node.get("executable")), root)
        return bool(schema) and name in schema.get("parameters", {})

    def set_param(name: str, val: str, quote: bool = False) -> None:
        for n in nodes:
            if has_param(n, name):
                out.append(f"nodes.{n['name']}.parameters.{name}=" + (f"'{val}'" if quote else val))

    if value.get("backend"):
        if value["backend"] not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {value['backend']!r}")
        set_param("backend", value["backend"])
    if value.get("precision"):
        if value["precision"] not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {value['precision']!r}")
        for n in nodes:
            for k, v in PRECISION_PARAMETERS.get(str(n.get("executable")), {}).get(value["precision"], {}).items():
                out.append(f"nodes.{n['name']}.parameters.{k}={v}")
    if value.get("engine_cache"):
        set_param("engine_cache_dir", value["engine_cache"], quote=True)
    for flag in ("build_only", "rebuild_stale_engine"):
        if value.get(flag, "") != "":
            set_param(flag, str(_truthy(value[flag])).lower())
    if value.get("use_sim_time"):
        out.append(f"use_sim_time={str(_truthy(value['use_sim_time'])).lower()}")
    if value.get("namespace"):
        out += [f"nodes.{n['name']}.namespace={value['namespace']}" for n in nodes]
    if value.get("lidar_frame"):
        set_param("expected_frame", value["lidar_frame"], quote=True)
    for arg, (topic, _) in TOPIC_ARGUMENTS.items():
        if value.get(arg):
            out += [f"nodes.{n['name']}.remaps.{topic}={value[arg]}" for n in nodes
                    if topic in (n.get("remaps") or {})]
    return out


def deployment_env(args: Mapping[str, str]) -> dict[str, str]:
    """Environment for every node: the manifest of ``models_dir``."""
    env = {}
    if args.get("models_dir"):
        env[MANIFEST_ENV] = str(Path(args["models_dir"]) / "manifest.yaml")
    return env


def load_graph_data(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text()) or {}


def builds_engines(node: NodeSpec, root: Path) -> bool:
    """A node with a ``build_only`` parameter loads model engines."""
    schema, _ = node_schema(node.executable, root)
    return bool(schema) and BUILD_ONLY_PARAMETER in schema.get("parameters", {})


def build_only_graph(graph: Graph) -> Graph:
    """The graph's model nodes only, each with ``build_only: true`` (wall-clock time, no remaps
    needed: they build and exit without touching DDS data)."""
    nodes = tuple(replace(n, parameters={**dict(n.parameters), BUILD_ONLY_PARAMETER: True})
                  for n in graph.nodes if builds_engines(n, graph.root))
    return replace(graph, nodes=nodes, use_sim_time=False, mode="processes")
