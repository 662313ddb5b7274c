"""Session-wide test settings.

Every test session gets ROS 2 domains of its own, so that concurrent sessions on one machine (two
developers, a benchmark, a demo, CI) never see each other's topics, and DDS discovery stays on
loopback. Domains are claimed with an exclusive lock file held for the whole session (a
pid-derived number collided when many sessions ran at once). Child processes (nodes started by
tests, tps-bringup, evaluation workers) inherit the environment.
"""

import fcntl
import os
import random
import tempfile
from pathlib import Path

import pytest

# Fast DDS domains valid everywhere are 0..101; 0 is left to people running nodes by hand.
SESSION_DOMAINS = list(range(1, 60)) + list(range(70, 90))
# Closed-loop evaluation runs its episodes on ROS_DOMAIN_ID = base + slot.
EVAL_DOMAIN_BLOCKS = [(base, 4) for base in range(90, 102, 4) if base + 3 <= 101]
LOCK_DIR = Path(tempfile.gettempdir()) / "tps-ros-domains"

_held_locks = []


def _try_lock(domain: int):
    LOCK_DIR.mkdir(exist_ok=True)
    handle = open(LOCK_DIR / f"{domain}.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _claim_domain(candidates) -> int:
    order = list(candidates)
    random.Random(os.getpid()).shuffle(order)
    for domain in order:
        handle = _try_lock(domain)
        if handle is not None:
            _held_locks.append(handle)
            return domain
    raise RuntimeError(f"every ROS domain in {candidates} is held by another test session ({LOCK_DIR})")


def _claim_block(blocks) -> int | None:
    for base, size in blocks:
        handles = [_try_lock(d) for d in range(base, base + size)]
        if all(handles):
            _held_locks.extend(handles)
            return base
        for h in handles:
            if h is not None:
                h.close()
    return None


def pytest_configure(config):
    explicit = os.environ.get("TPS_TEST_DOMAIN_ID")
    domain = int(explicit) if explicit else _claim_domain(SESSION_DOMAINS)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    if "TPS_EVAL_DOMAIN_BASE" not in os.environ:
        base = _claim_block(EVAL_DOMAIN_BLOCKS)
        if base is not None:
            os.environ["TPS_EVAL_DOMAIN_BASE"] = str(base)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    # The project's Fast DDS profile for this process's own participants (fuzz rigs, replay players,
    # test publishers of camera images): read once, at the first participant, so set here, first.
    from tps_bringup.runner import use_project_dds_profile

    use_project_dds_profile(Path(__file__).resolve().parents[1])
    # Children must re-run the ROS wheels' bootstrap (see scripts/setup.sh).
    os.environ.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)


@pytest.fixture
def test_node(request):
    """A plain rclpy node the test publishes and listens with (``<test module>_driver``): rclpy
    is initialised for the test and shut down after it."""
    import rclpy

    rclpy.init()
    node = rclpy.create_node(f"{request.module.__name__.rsplit('.', 1)[-1]}_driver")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()
