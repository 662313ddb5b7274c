"""The stack's state read back from recorded bags (tps_eval.stack_state): what the demo's BEV
animation draws and its perception table counts. The bags are the regression replay's real ones."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tps_eval import stack_state as SS
from tps_eval.replay.bagio import read_messages

DATA = Path(__file__).resolve().parents[1] / "data" / "replay"
INPUT = DATA / "cut_in_s1.mcap"            # simulator bag: sensors, no stack outputs
OUTPUTS = DATA / "cut_in_s1.reference.mcap"  # the graph's outputs of that bag


def test_topic_counts_match_the_messages_in_the_bag():
    counted = Counter(topic for topic, _t, _ns, _m in read_messages(INPUT))
    assert SS.topic_counts(INPUT) == {t: counted.get(t, 0) for t in SS.topic_counts(INPUT)}
    assert SS.topic_counts(INPUT)[SS.LIDAR_TOPIC] == 31


def test_state_per_step_and_detections_in_the_map_frame():
    st = SS.read_stack_state(OUTPUTS)
    assert st.topics == {SS.TRAJECTORY_TOPIC, SS.DETECTIONS_TOPIC}       # no monitor recorded
    assert len(st.detections) == 31 and set(st.sources.values()) == {1}  # FALLBACK every step
    key = max(st.detections, key=lambda k: len(st.detections[k][2]))
    t_s = key / 1000.0
    lines = SS.info_lines(st, t_s)
    n = len(st.detections[key][2])
    assert n > 0
    assert lines == ("driving: FALLBACK", "monitor: not running", f"detector: {n} agents, ok")
    assert SS.info_lines(st, t_s + 0.05)[0] == "driving: -"              # no step at that stamp
    base = st.detections[key][2]
    world = SS.detections_in_map(st, t_s, (10.0, 5.0, np.pi / 2))
    # base_link x (forward) points north at yaw pi/2: map = (10 - y, 5 + x)
    np.testing.assert_allclose(world.xy, np.stack([10.0 - base[:, 1], 5.0 + base[:, 0]], axis=1),
                               atol=1e-9)
    np.testing.assert_allclose(world.yaw, base[:, 2] + np.pi / 2)
    assert SS.detections_in_map(st, t_s + 0.05, (0.0, 0.0, 0.0)) is None


def test_perception_row_of_a_bag_without_perception():
    row = SS.perception_row(INPUT)
    assert row == {"lidar_frames": 31, "detection_frames": 0, "frames_with_agents": 0,
                   "fault_frames": 0, "answered_share": 0.0}
    with pytest.raises(Exception, match="no such file"):
        SS.read_stack_state(DATA / "missing.mcap")
