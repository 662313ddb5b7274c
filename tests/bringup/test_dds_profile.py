"""The test session's own DDS participants (fuzz rigs, replay players, test publishers of camera
images) run with the project's Fast DDS profile, as every node tps-bringup starts does.

Fast DDS reads the profile file once, at a process's first participant: the replay player set the
variable itself, but in the full suite earlier tests had created participants already, so its
camera images went through the default 512 KiB shared-memory segment (a 675 KiB image does not
fit; a lost fragment waits for the default 3 s heartbeat). tests/conftest.py sets it first.
"""

import os
import time
from pathlib import Path

from tps_bringup.runner import DDS_PROFILE, DDS_PROFILE_ENV

ROOT = Path(__file__).resolve().parents[2]
PROFILE_SEGMENT_BYTES = 8 * 1024 * 1024      # config/dds/fastdds.xml: segment_size 8388608
DEFAULT_SEGMENT_BYTES = 512 * 1024


def _mapped_segments() -> dict[str, int]:
    """Fast DDS shared-memory segments this process has mapped: name -> mapped bytes."""
    sizes: dict[str, int] = {}
    with open("/proc/self/maps", encoding="ascii", errors="replace") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith("/dev/shm/fastrtps_") and "port" not in parts[5]:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                sizes[parts[5]] = sizes.get(parts[5], 0) + hi - lo
    return sizes


def test_session_sets_the_project_profile():
    assert os.environ.get(DDS_PROFILE_ENV) == str(ROOT / DDS_PROFILE)


def test_a_participant_created_now_gets_the_profiles_segment():
    import rclpy
    from std_msgs.msg import String

    before = _mapped_segments()
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("dds_profile_probe", context=context)
        node.create_publisher(String, "dds_profile_probe", 10)
        deadline = time.monotonic() + 5.0
        new = {}
        while time.monotonic() < deadline:
            new = {k: v for k, v in _mapped_segments().items() if k not in before}
            if new:
                break
            time.sleep(0.05)
        assert new, "the new participant mapped no Fast DDS shared-memory segment"
        biggest = max(new.values())
        assert biggest >= PROFILE_SEGMENT_BYTES, (
            f"the participant's largest segment is {biggest} bytes: the default "
            f"({DEFAULT_SEGMENT_BYTES}), not the profile's {PROFILE_SEGMENT_BYTES} -- "
            f"{DDS_PROFILE_ENV} was set after this process's first participant, or not at all")
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
