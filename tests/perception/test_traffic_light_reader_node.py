"""traffic_light_reader on real DDS: proof of life (map knowledge + route + CameraInfo + images
rendered by the simulator's camera + odometry of each image's stamp -> the state of the route's
light, stamped with the image), the camera extrinsic from /tf_static, a head occluded -> UNKNOWN,
a bad image -> ERROR diagnostic with the node alive, and the parameter-error exit."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from light_scenes import box, light_head, light_scene

rclpy = pytest.importorskip("rclpy")
from carla_msgs.msg import CarlaTrafficLightInfoList  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from tps_common.qos import LATCHED_QOS, RELIABLE_SENSOR_QOS  # noqa: E402
from tps_common.tf import tf_static_broadcast_qos  # noqa: E402
from tps_common.traffic_lights import GREEN, RED, UNKNOWN, YELLOW  # noqa: E402
from tps_msgs.msg import TrafficLightState, TrafficLightStates  # noqa: E402
from tps_sim import conversions as sim_conv  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "planner"))
from ros_harness import InputMatches  # noqa: E402
from tps_sim.sensors.camera import CameraModel, CameraParams  # noqa: E402
from tps_sim.sensors.rig import SensorRig  # noqa: E402

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[2]
NODE = "tl_reader"
STARTUP_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 15.0
HEAD_DISTANCE_M = 40.0
# A camera that is NOT the configured default: the node must take it from /tf_static.
MOUNT = (1.1, 0.2, 1.7, 0.0, math.radians(-2.0), math.radians(1.0))


def _start(log: Path, **params) -> subprocess.Popen:
    args = [str(Path(sys.executable).parent / "traffic_light_reader"), "--ros-args", "-r", f"__node:={NODE}",
            "--params-file", str(REPO / "config" / "traffic_light_reader.param.yaml"),
            "-p", "reliable_sensor_qos:=true"]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env=dict(os.environ))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class Harness:
    def __init__(self, context):
        self.node = rclpy.create_node("tl_reader_test", context=context)
        self.exec = rclpy.executors.SingleThreadedExecutor(context=context)
        self.exec.add_node(self.node)
        p = self.node.create_publisher
        self.image_pub = p(sim_conv.Image, f"/{NODE}/input/image", RELIABLE_SENSOR_QOS)
        self.info_pub = p(CameraInfo, f"/{NODE}/input/camera_info", RELIABLE_SENSOR_QOS)
        self.odom_pub = p(Odometry, f"/{NODE}/input/odometry", RELIABLE_SENSOR_QOS)
        self.route_pub = p(sim_conv.Path, f"/{NODE}/input/route", LATCHED_QOS)
        self.lights_pub = p(CarlaTrafficLightInfoList, f"/{NODE}/input/traffic_light_info", LATCHED_QOS)
        self.tf_pub = p(TFMessage, "/tf_static", tf_static_broadcast_qos())
        self.out: list[TrafficLightStates] = []
        self.diags: list[DiagnosticArray] = []
        self.node.create_subscription(TrafficLightStates, f"/{NODE}/output/traffic_lights", self.out.append, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, 50)
        self.t = 1.0
        self.matches = InputMatches(self.node, NODE)    # the node's own reader-side matches

    def spin(self, pred, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.exec.spin_once(timeout_sec=0.02)
            if pred():
                return True
        return bool(pred())

    def send(self, scene, camera: CameraModel, frame_id: str = "ego_vehicle/rgb_front") -> TrafficLightStates:
        self.t += 0.1
        t = self.t
        x, y, yaw = scene.ego_pose
        self.info_pub.publish(sim_conv.camera_info_msg(camera.camera_info_fields(), t, frame_id))
        self.odom_pub.publish(sim_conv.odometry_msg((x, y, yaw), 10.0, 0.0, t))
        self.image_pub.publish(sim_conv.image_msg(camera.render(scene), t, frame_id))
        key = round(t * 1e9)
        ok = self.spin(lambda: any(sim_conv.stamp_to_ns(m.header.stamp) == key for m in self.out), REPLY_TIMEOUT_S)
        assert ok, f"no TrafficLightStates for t = {t:.1f} s"
        return next(m for m in self.out if sim_conv.stamp_to_ns(m.header.stamp) == key)


@pytest.fixture()
def harness():
    context = rclpy.Context()
    rclpy.init(context=context)
    h = Harness(context)
    yield h
    h.exec.shutdown()
    h.node.destroy_node()
    rclpy.shutdown(context=context)


def test_reads_the_route_light_with_the_extrinsic_from_tf_static(harness, tmp_path):
    heads = [light_head(HEAD_DISTANCE_M, light_id=11), light_head(HEAD_DISTANCE_M, 3.5, light_id=12)]
    route = np.stack([np.linspace(-20.0, 120.0, 141), np.zeros(141)], axis=1)  # through light 11's line
    camera = CameraModel(CameraParams(mount=MOUNT))
    proc = _start(tmp_path / "reader.log")
    try:
        h = harness
        h.tf_pub.publish(sim_conv.tf_static_msg(SensorRig(camera_mount=MOUNT)))
        h.route_pub.publish(sim_conv.path_msg(route))
        h.lights_pub.publish(sim_conv.traffic_light_info_msg(heads))
        # up when its readers of the per-frame inputs have matched these publishers (its own report:
        # a volatile reader not matched yet would drop the first frame) and its output has a writer
        per_frame = [f"/{NODE}/input/{name}" for name in ("image", "camera_info", "odometry")]
        assert h.spin(lambda: proc.poll() is not None or (
            not h.matches.unmatched(per_frame)
            and h.node.count_publishers(f"/{NODE}/output/traffic_lights") > 0), STARTUP_TIMEOUT_S), \
            f"traffic_light_reader did not come up (its matches: {h.matches.counts})"
        assert proc.poll() is None
        h.spin(lambda: False, 1.0)          # let the latched inputs and /tf_static arrive
        for state in (RED, YELLOW, GREEN):
            got = h.send(light_scene(heads, [state, RED]), camera)
            assert got.header.frame_id == "map"
            assert [(li.id, li.state, li.reason) for li in got.lights] == [
                (11, state, TrafficLightState.REASON_NONE)]             # only the route's light
            assert got.lights[0].confidence >= 0.75
            # along the route from base_link to the stop line (31 m before the head)
            assert got.lights[0].distance_to_stop_line_m == pytest.approx(HEAD_DISTANCE_M - 31.0, abs=0.6)
        # a bus in front of the head: UNKNOWN, never a colour
        occluded = light_scene(heads, [GREEN, RED], box((21.5, 0.0, 2.5), (1.0, 3.0, 5.0), material=3))
        got = h.send(occluded, camera)
        assert (got.lights[0].state, got.lights[0].reason) == (UNKNOWN, TrafficLightState.REASON_UNREADABLE)
        # an image in the wrong frame: ERROR diagnostic, UNKNOWN, the node stays up
        got = h.send(light_scene(heads, [GREEN, RED]), camera, frame_id="elsewhere")
        assert got.lights[0].state == UNKNOWN
        assert h.spin(lambda: any(s.name == f"{NODE}: input" and s.level == DiagnosticStatus.ERROR for a in h.diags
                                  for s in a.status), 5.0)
        origins = {kv.value for a in h.diags for s in a.status if s.name == f"{NODE}: processing_time"
                   for kv in s.values if kv.key == "camera_extrinsic_origin"}
        assert "tf_static" in origins       # the images in the camera's frame
        assert proc.poll() is None
    finally:
        _stop(proc)


def test_bad_parameter_exits_2(tmp_path):
    proc = _start(tmp_path / "bad.log", min_agreement=0.4)
    try:
        assert proc.wait(timeout=STARTUP_TIMEOUT_S) == 2
    finally:
        _stop(proc)
    assert "min_agreement" in (tmp_path / "bad.log").read_text()
