"""perception_node with the Agent-Centric Tokenizer on real DDS, SHIPPED models (detector_int8 +
tokenizer_int8 from models/manifest.yaml): over 20 frames of a simulated scene every DetectedAgents
has an AgentTokens of the same stamp with one token per agent, same ids, same order, the agent's
geometry and a valid code; bad clouds (malformed / empty / NaN / wrong frame) give an ERROR
diagnostic and an empty DetectedAgents *and* an empty AgentTokens with the status, and the node keeps
running; ``tokenizer_enabled: false`` publishes no tokens."""

from __future__ import annotations

import math

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from test_perception_node import (  # noqa: E402
    STABLE_FRAMES,
    Harness,
    _cloud,
    _malformed,
    _start,
    _stop,
    _wrong_fields,
)
from tps_msgs.msg import AgentTokens, DetectedAgents  # noqa: E402

pytestmark = pytest.mark.ros

NODE = "perception_tok"
TOKENS_TIMEOUT_S = 20.0
GEOMETRY_TOL = 1e-4       # float32 round trip through two messages


class TokenHarness(Harness):
    """The detector test's harness, also collecting ``~/output/tokens``."""

    def __init__(self, context, name: str):
        super().__init__(context, name)
        self.tokens: list[AgentTokens] = []
        self.node.create_subscription(AgentTokens, f"/{name}/output/tokens", self.tokens.append, 50)

    def wait_tokens_publisher(self) -> None:
        assert self.spin_until(lambda: self.node.count_publishers(f"/{self.name}/output/tokens") > 0, 30.0), \
            "perception_node does not publish tokens"

    def tokens_for(self, stamp) -> AgentTokens:
        def find():
            return next((m for m in self.tokens if (m.header.stamp.sec, m.header.stamp.nanosec)
                         == (stamp.sec, stamp.nanosec)), None)

        assert self.spin_until(lambda: find() is not None, TOKENS_TIMEOUT_S), f"no AgentTokens for stamp {stamp}"
        return find()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from test_perception_node import SCENE, SCENE_DURATION_S
    from tps_eval.detector.data import episode_frames
    from tps_sim.dataset import generate_episode

    out = tmp_path_factory.mktemp("tok_scene")
    path = generate_episode(SCENE[0], SCENE[1], out, duration_s=SCENE_DURATION_S, frame_stride=1, image_every=0)
    return list(episode_frames(path))


@pytest.fixture(scope="module")
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


@pytest.fixture(scope="module")
def running(tmp_path_factory, context):
    from tps_inference.manifest import Manifest

    man = Manifest.load()
    assert "detector_int8" in man and "tokenizer_int8" in man, "shipped models missing from models/manifest.yaml"
    proc = _start(tmp_path_factory.mktemp("log") / "perception_tok.log", name=NODE, tokenizer_enabled=True)
    h = TokenHarness(context, NODE)
    try:
        h.wait_connected(proc)
        h.wait_tokens_publisher()
        yield h, proc
    finally:
        _stop(proc)
        h.node.destroy_node()


def test_tokens_match_detections_over_20_frames(running, scene):
    h, proc = running
    frames = scene[-STABLE_FRAMES:]
    pairs = []
    for f in frames:
        det = h.send(_cloud(f.points), f.ego_pose)
        pairs.append((det, h.tokens_for(det.header.stamp)))
    assert proc.poll() is None
    assert len(pairs) == STABLE_FRAMES
    n_tokens = 0
    codes = set()
    for det, tok in pairs:
        assert det.status == DetectedAgents.STATUS_OK and tok.status == AgentTokens.STATUS_OK, tok.status_message
        assert tok.header.frame_id == det.header.frame_id == "base_link"
        assert tok.processing_time_ms >= det.processing_time_ms > 0
        assert 256 <= tok.codebook_size <= 1024 and tok.scene_codebook_size > 0
        assert [t.agent_id for t in tok.tokens] == [a.id for a in det.agents]
        for t, a in zip(tok.tokens, det.agents, strict=True):
            assert t.code_index < tok.codebook_size
            assert math.isfinite(t.quantisation_error) and t.quantisation_error >= 0.0
            np.testing.assert_allclose([t.x, t.y, t.yaw, t.length, t.width, t.vx, t.vy],
                                       [a.center.x, a.center.y, a.yaw, a.size.x, a.size.y, a.velocity.x,
                                        a.velocity.y], atol=GEOMETRY_TOL)
            codes.add(t.code_index)
        assert len(tok.scene_codes) == len(tok.scene_quantisation_errors) > 0
        assert all(c < tok.scene_codebook_size for c in tok.scene_codes)
        assert all(math.isfinite(e) and e >= 0.0 for e in tok.scene_quantisation_errors)
        n_tokens += len(tok.tokens)
    assert n_tokens > 0, "the scene's agents were never detected"
    st = h.diag_for(pairs[-1][0].header.stamp, "processing_time")
    assert st is not None
    keys = {kv.key: kv.value for kv in st.values}
    assert {"processing_time_ms", "tokenize_ms", "network_ms", "tokens"} <= set(keys)
    assert int(keys["tokens"]) == len(pairs[-1][1].tokens) and keys["tokenizer_model"] == "tokenizer_int8"


@pytest.mark.parametrize("make, reason", [
    (_malformed, "malformed"),
    (_wrong_fields, "malformed"),
    (lambda: _cloud(np.zeros((0, 4), np.float32)), "empty"),
    (lambda: _cloud(np.array([[1.0, np.nan, 0.0, 0.0]] * 5 + [[5.0, 1.0, -1.0, 0.5]] * 5, np.float32)), "NaN"),
    (lambda: _cloud(np.ones((10, 4), np.float32), frame="map"), "frame"),
], ids=["truncated", "no_xyz", "empty", "nan", "wrong_frame"])
def test_bad_cloud_gives_empty_tokens_with_status(running, scene, make, reason):
    h, proc = running
    det = h.send(make())
    tok = h.tokens_for(det.header.stamp)
    assert det.status == DetectedAgents.STATUS_INVALID_INPUT and len(det.agents) == 0
    assert tok.status == AgentTokens.STATUS_INVALID_INPUT and reason in tok.status_message
    assert len(tok.tokens) == 0 and len(tok.scene_codes) == 0 and tok.codebook_size > 0
    st = h.diag_for(det.header.stamp, "input")
    assert st is not None and st.level == DiagnosticStatus.ERROR and reason in st.message
    good = h.send(_cloud(scene[-1].points))
    good_tok = h.tokens_for(good.header.stamp)
    assert proc.poll() is None
    assert good.status == DetectedAgents.STATUS_OK and good_tok.status == AgentTokens.STATUS_OK
    assert [t.agent_id for t in good_tok.tokens] == [a.id for a in good.agents]


def test_tokenizer_disabled_publishes_no_tokens(tmp_path, context, scene):
    name = "perception_notok"
    proc = _start(tmp_path / "perception_notok.log", name=name, tokenizer_enabled=False)
    h = TokenHarness(context, name)
    try:
        h.wait_connected(proc)
        det = h.send(_cloud(scene[-1].points))
        assert det.status == DetectedAgents.STATUS_OK and len(det.agents) > 0
        h.spin_until(lambda: False, 0.5)
        assert h.node.count_publishers(f"/{name}/output/tokens") == 0 and not h.tokens
        st = h.diag_for(det.header.stamp, "processing_time")
        assert st is not None and "tokenize_ms" not in {kv.key for kv in st.values}
    finally:
        _stop(proc)
        h.node.destroy_node()
