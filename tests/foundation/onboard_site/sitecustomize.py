"""Import guard for tests/foundation/test_docker.py: on PYTHONPATH with TPS_ONBOARD_GUARD_ROOT set,
only what the vehicle images install is importable -- requirements/runtime.lock, the distribution's
numpy/scipy/PyYAML, cuda-python/TensorRT, ROS 2 and the onboard workspace packages (ros2_ws/src minus
TPS_ONBOARD_GUARD_SKIP, the packages the images skip). Any other installed distribution (torch,
SUMO, Ray, rosbags, ...) or the repository's offline folders raise ImportError naming it."""

import importlib.abc
import importlib.metadata
import os
import re
import sys
from pathlib import Path

_ROOT = os.environ.get("TPS_ONBOARD_GUARD_ROOT")
NOT_IN_IMAGE = ("export", "training", "benchmarks", "tests")  # repository folders the images do not copy
FROM_THE_DISTRIBUTION = ("numpy", "scipy", "pyyaml", "cuda-python", "tensorrt")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class OnboardImportGuard(importlib.abc.MetaPathFinder):
    def __init__(self, root: Path, skipped: set[str]) -> None:
        lock = (root / "requirements" / "runtime.lock").read_text().splitlines()
        pins = (re.match(r"^([A-Za-z0-9_.\-]+)==", line.strip()) for line in lock)
        self.allowed = {_norm(m.group(1)) for m in pins if m} | set(FROM_THE_DISTRIBUTION)
        self.skipped = set(skipped) | set(NOT_IN_IMAGE)
        self.onboard = {p.name for p in (root / "ros2_ws" / "src").iterdir() if (p / "package.xml").is_file()} - skipped
        self.owner = importlib.metadata.packages_distributions()

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in self.skipped:
            raise ImportError(f"{name}: not in the vehicle image (the images leave {top} out)")
        dists = self.owner.get(top)
        if dists and not any(_norm(d) in self.allowed or _norm(d).startswith("ros-") or d in self.onboard
                             for d in dists):
            raise ImportError(f"{name} (distribution {dists[0]}) is not in the vehicle image's runtime set "
                              "(requirements/runtime.lock)")
        return None  # not ours to decide: the standard finders go on


if _ROOT:
    sys.meta_path.insert(0, OnboardImportGuard(Path(_ROOT), {s for s in os.environ.get(
        "TPS_ONBOARD_GUARD_SKIP", "").split(",") if s}))
