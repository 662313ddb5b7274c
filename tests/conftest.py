"""Session-wide test settings.

Every test session gets its own ROS 2 domain so that concurrent sessions on one machine (two
developers, a benchmark, CI) never see each other's topics, and DDS discovery stays on loopback.
Child processes (nodes started by tests, tps-bringup) inherit both.
"""

import os


def _pick_domain_id() -> int:
    explicit = os.environ.get("TPS_TEST_DOMAIN_ID")
    if explicit:
        return int(explicit)
    # 1..100: valid Fast DDS domains; 0 is left to people running nodes by hand.
    return 1 + os.getpid() % 100


def pytest_configure(config):
    os.environ["ROS_DOMAIN_ID"] = str(_pick_domain_id())
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    # Children must re-run the ROS wheels' bootstrap (see scripts/setup.sh).
    os.environ.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
