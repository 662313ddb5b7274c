"""sim_bridge: the SUMO world behind the carla-ros-bridge topic contract (tps_sim/BRIDGE.md).

Thin node: declares and validates parameters, converts the core's frames (tps_sim.bridge) to
messages and publishes them; control messages go to the core. The node's timers run on the
steady (wall) clock: the bridge is the source of /clock, so it never follows sim time itself.
"""

from __future__ import annotations

import sys
import time

import rclpy
from carla_msgs.msg import (
    CarlaEgoVehicleControl,
    CarlaEgoVehicleStatus,
    CarlaTrafficLightInfoList,
    CarlaTrafficLightStatusList,
)
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage
from tps_common import qos
from tps_common.levels import ERROR, WARN
from tps_common.node import is_requested_shutdown, load_params
from tps_common.params import ParameterError
from tps_common.readiness import INPUT_MATCHES_TOPIC, parse_output_report, parse_report
from tps_common.tf import tf_qos, tf_static_broadcast_qos
from tps_msgs.msg import DrivingInstruction, GroundTruth, LaneMap

from tps_sim import conversions as conv
from tps_sim.bridge import BridgeParams, SimBridge, status_summary

NODE_NAME = "sim_bridge"
# Wall period of the polling timer (timeouts, free-running steps) [s].
POLL_PERIOD_S = 0.005
# Wall period of the subscriber check while step 0 waits for ``wait_for_nodes`` [s].
WAIT_FOR_NODES_PERIOD_S = 0.1
# Once the ``wait_for_nodes`` subscribed, step 0 also waits (at most this long, wall) until every
# node that reports its readers (tps_common.readiness) has matched a publisher on each of its
# topics that has one on the graph: the stack's own links (planner -> monitor -> arbiter) are
# discovered in two halves too, and a reader that matched late lost the first candidates (seen:
# one of two identical stack episodes judged "planner silent" at 0.7 s and spent 1 s in FALLBACK).
READERS_MATCH_TIMEOUT_S = 20.0
# Then step 0 waits (at most this long, wall) until every ``wait_for_nodes`` node has answered it:
# published a message on one of its ``/tps/`` outputs. While step 0 was held, the arbiter had
# waited for the planner's candidate of stamp 0 in vain and marked the planner "not answering";
# released before the planner's first candidate, the loop raced through frames 1-7 on the fallback
# in under a second of wall time and the monitor judged "planner silent" (1 run of 2 identical
# episodes: a start that depended on the host's speed).
ANSWER_TIMEOUT_S = 20.0
# Sensor outputs RELIABLE (the synchronous loop loses no frame; a best-effort subscriber still
# matches a reliable writer).
SENSOR_QOS = qos.RELIABLE_SENSOR_QOS


class SimBridgeNode(Node):
    """The bridge node; ``finished`` becomes True when the episode ended with exit_on_end."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("node_name", NODE_NAME)
        super().__init__(**kwargs)
        _, values = load_params(self, "sim_bridge")
        self.params = BridgeParams.from_values(values)
        self.finished = False
        self.standalone = False  # main() sets True: it runs the exit itself
        self._wall = Clock(clock_type=ClockType.STEADY_TIME)
        self.core = SimBridge(self.params)
        # Step 0 is held until these nodes subscribe to one of the bridge's outputs (synchronous
        # mode; at most wait_for_controller_s: a stack node that loads models is up from the first
        # step although no control depends on it), then until their readers matched and they
        # answered step 0 (each stage with its own bound). The node owns the whole hold: the core
        # holds step 0 until released (with the core's own wait_for_controller_s bound the hold
        # lapsed while a planner loading under load had not answered yet, and the loop ran ahead).
        self._waiting_for = {n.strip() for n in self.params.wait_for_nodes.split(",") if n.strip()}
        # Start-up problems (a waited node never came, readers never matched): a WARN when found,
        # then part of every periodic sync status and of the final one (a volatile reader that
        # had not matched the bridge's writer yet still hears them; they stay true all episode).
        self._startup_warnings: list[str] = []
        self._next_node_check_s = 0.0
        self._started_s = time.monotonic()            # step 0 published (reset at start)
        self._subscribed_at_s: float | None = None    # when the waiting nodes had all subscribed
        self._matched_at_s: float | None = None       # ... and every reporting reader had matched
        self._answered: set[str] = set()              # waiting nodes heard on one of their outputs
        self._answer_subs: dict[str, object] = {}     # output topic -> subscription (while held)
        self._answer_nodes: dict[str, set[str]] = {}  # output topic -> the waiting nodes publishing it
        self._input_matches: dict[str, dict[str, int]] = {}
        self._output_matches: dict[str, dict[str, int]] = {}   # the writer half (tps_common.readiness)
        if self._waiting_for:
            self.create_subscription(DiagnosticArray, INPUT_MATCHES_TOPIC, self._on_input_matches,
                                     qos.INPUT_MATCHES_READER_QOS)
        self.core.hold_start(bool(self._waiting_for))
        p = self.create_publisher
        self.pub_clock = p(ClockMsg, conv.TOPIC_CLOCK, qos.CLOCK_QOS)
        self.pub_tf = p(TFMessage, conv.TOPIC_TF, tf_qos())
        self.pub_tf_static = p(TFMessage, conv.TOPIC_TF_STATIC, tf_static_broadcast_qos())
        self.pub_lidar = p(PointCloud2, conv.TOPIC_LIDAR, SENSOR_QOS)
        self.pub_image = p(Image, conv.TOPIC_IMAGE, SENSOR_QOS)
        self.pub_info = p(CameraInfo, conv.TOPIC_CAMERA_INFO, SENSOR_QOS)
        self.pub_odom = p(Odometry, conv.TOPIC_ODOMETRY, SENSOR_QOS)
        self.pub_status = p(CarlaEgoVehicleStatus, conv.TOPIC_STATUS, SENSOR_QOS)
        self.pub_gt = p(GroundTruth, conv.TOPIC_GROUND_TRUTH, SENSOR_QOS)
        self.pub_route = p(Path, conv.TOPIC_ROUTE, qos.LATCHED_QOS)
        self.pub_instruction = p(DrivingInstruction, conv.TOPIC_INSTRUCTION, qos.LATCHED_QOS)
        self.pub_lane_map = p(LaneMap, conv.TOPIC_LANE_MAP, qos.LATCHED_QOS)
        self.pub_diag = p(DiagnosticArray, conv.TOPIC_DIAGNOSTICS, qos.DIAGNOSTICS_QOS)
        self.pub_light_info = p(CarlaTrafficLightInfoList, conv.TOPIC_LIGHT_INFO, qos.LATCHED_QOS)
        self.pub_light_status = p(CarlaTrafficLightStatusList, conv.TOPIC_LIGHT_STATUS, SENSOR_QOS)
        self._publishers_by_topic = {
            conv.TOPIC_CLOCK: self.pub_clock, conv.TOPIC_TF: self.pub_tf,
            conv.TOPIC_LIDAR: self.pub_lidar,
            conv.TOPIC_IMAGE: self.pub_image, conv.TOPIC_CAMERA_INFO: self.pub_info,
            conv.TOPIC_ODOMETRY: self.pub_odom, conv.TOPIC_STATUS: self.pub_status,
            conv.TOPIC_GROUND_TRUTH: self.pub_gt, conv.TOPIC_LIGHT_STATUS: self.pub_light_status}
        self.create_subscription(CarlaEgoVehicleControl, conv.TOPIC_CONTROL, self._on_control,
                                 qos.CONTROL_QOS)
        period = POLL_PERIOD_S if self.params.step_period_s <= 0 else min(
            POLL_PERIOD_S, self.params.step_period_s)
        self.create_timer(period, self._on_poll, clock=self._wall)
        self.create_timer(values["diagnostics_period_s"], self._publish_diagnostics,
                          clock=self._wall)
        # The fixed frames, once and latched (all in one message, as tf2's static broadcaster):
        # vehicle -> base_link, lidar, camera optical frame (the enabled sensors).
        self.pub_tf_static.publish(conv.tf_static_msg(self.core.rig, 0.0,
                                                      lidar=self.params.lidar_enabled,
                                                      camera=self.params.camera_enabled))
        self.pub_route.publish(conv.path_msg(self.core.route, 0.0))
        self.pub_instruction.publish(conv.instruction_msg(self.core.instruction, 0.0))
        self.pub_lane_map.publish(conv.lane_map_msg(self.core.lane_map, 0.0))
        self.pub_light_info.publish(conv.traffic_light_info_msg(self.core.light_heads))
        self._publish_frame(self.core.start(time.monotonic()))
        self._started_s = time.monotonic()
        self.get_logger().info(
            f"{self.params.scenario} seed {self.params.seed}: ego_driver={self.params.ego_driver}, "
            f"synchronous={self.params.synchronous}, {len(self.core.route)} route points")

    def _on_control(self, msg: CarlaEgoVehicleControl) -> None:
        verdict = self.core.submit_control(conv.control_fields(msg), time.monotonic())
        if verdict.problems:
            text = "; ".join(t for _, t in verdict.problems)
            # rclpy wants one severity per logging call site: two sites.
            if any(lv == ERROR for lv, _ in verdict.problems):
                level = ERROR
                self.get_logger().error(text, throttle_duration_sec=1.0)
            else:
                level = WARN
                self.get_logger().warning(text, throttle_duration_sec=1.0)
            self.pub_diag.publish(conv.diagnostic_msg(
                NODE_NAME, [("control", level, text, {"verdict": verdict.status})],
                self._sim_stamp()))
        if verdict.status == "accepted":
            self._on_poll()

    def _check_waiting_nodes(self) -> None:
        """Lift the step-0 hold once every ``wait_for_nodes`` node subscribes to a sensor or state
        output (lidar, camera, odometry, status, ground truth, light status)."""
        now = time.monotonic()
        if now < self._next_node_check_s:
            return
        self._next_node_check_s = now + WAIT_FOR_NODES_PERIOD_S
        # sensor and state topics only: /clock and /tf are subscribed by any node at creation
        # (use_sim_time, TF listeners), before it has loaded what it needs
        subscribed = {info.node_name for topic in self._publishers_by_topic
                      if topic not in (conv.TOPIC_CLOCK, conv.TOPIC_TF)
                      for info in self.get_subscriptions_info_by_topic(topic)}
        missing = self._waiting_for - subscribed
        if missing:
            if now - self._started_s < self.params.wait_for_controller_s:
                self.get_logger().info(f"waiting for {sorted(missing)} to subscribe: step 0's sensor data "
                                       "withheld", throttle_duration_sec=5.0)
                return
            # never started (a misspelt name, a crashed node): not waited for any longer
            self._warn_sync(f"{sorted(missing)} never subscribed within "
                            f"{self.params.wait_for_controller_s:.0f} s (wait_for_controller_s)")
            self._waiting_for -= missing
        if self._subscribed_at_s is None:
            self._subscribed_at_s = now
        unmatched = self._unmatched_readers()
        if unmatched and now - self._subscribed_at_s < READERS_MATCH_TIMEOUT_S:
            self.get_logger().info(f"waiting for readers to match their publishers: {', '.join(unmatched[:6])}",
                                   throttle_duration_sec=5.0)
            return
        if unmatched:
            self._warn_sync(f"readers never matched a publisher within {READERS_MATCH_TIMEOUT_S:.0f} s: "
                            f"{', '.join(unmatched)}")
        if self._matched_at_s is None:
            self._matched_at_s = now
            if self.core.frame is not None:
                self._publish_frame(self.core.frame)   # step 0's sensors, first time (quiet start)
        silent = sorted(self._waiting_for - self._answered)
        if silent:
            self._subscribe_answers()
            if now - self._matched_at_s < ANSWER_TIMEOUT_S:
                self.get_logger().info(f"waiting for {silent} to answer step 0", throttle_duration_sec=5.0)
                return
            self._warn_sync(f"{silent} never answered step 0 within {ANSWER_TIMEOUT_S:.0f} s")
        self.get_logger().info(
            f"{sorted(self._waiting_for)} subscribed, their readers matched "
            f"({self._matched_at_s - self._subscribed_at_s:.2f} s later) and they answered step 0 "
            f"({now - self._matched_at_s:.2f} s later): step 0 released")
        self._waiting_for = set()
        for sub in self._answer_subs.values():
            self.destroy_subscription(sub)
        self._answer_subs, self._answer_nodes = {}, {}
        self.core.hold_start(False)

    def _warn_sync(self, what: str) -> None:
        text = f"step 0 released although {what}"
        self.get_logger().warning(text)
        self._startup_warnings.append(text)
        self.pub_diag.publish(conv.diagnostic_msg(NODE_NAME, [("sync", WARN, text, {})], self._sim_stamp()))

    def _subscribe_answers(self) -> None:
        """Subscribe (raw) to the ``/tps/`` outputs of every waiting node not heard yet."""
        from tps_common.msgtypes import message_class

        for node in sorted(self._waiting_for - self._answered):
            try:
                outputs = self.get_publisher_names_and_types_by_node(node, "/")
            except Exception:  # noqa: BLE001 - not on the graph (yet): asked again next check
                continue
            outputs = [(t, types) for t, types in outputs
                       if t.startswith("/tps/") and not t.startswith("/tps/graph/") and types]
            if not outputs:    # publishes no stack output (the episode recorder's ready node)
                self._answered.add(node)
                continue
            for topic, types in outputs:
                self._answer_nodes.setdefault(topic, set()).add(node)
                if topic in self._answer_subs:
                    continue
                try:
                    cls = message_class(types[0])
                except (AttributeError, ImportError, ValueError):
                    continue
                self._answer_subs[topic] = self.create_subscription(
                    cls, topic, lambda _raw, t=topic: self._answered.update(self._answer_nodes[t]),
                    qos.STACK_OUTPUT_QOS, raw=True)

    def _on_input_matches(self, msg: DiagnosticArray) -> None:
        self._input_matches.update(parse_report(msg))
        self._output_matches.update(parse_output_report(msg))

    def _unmatched_readers(self) -> list[str]:
        """'node topic' of every reader that has not matched a publisher although the graph has
        one, and 'node (no report)' of every waiting node that has not reported yet."""
        reported = {name.rsplit("/", 1)[-1] for name in self._input_matches}
        out = [f"{n} (no report yet)" for n in sorted(self._waiting_for - reported)]
        for name, counts in sorted(self._input_matches.items()):
            for topic, n in sorted(counts.items()):
                if n < 1 and self.count_publishers(topic) > 0:
                    out.append(f"{name} {topic}")
        # The writer half of the waited nodes' stack outputs: each writer must have matched every
        # reporting reader that matched it (a writer sends only to the readers it has matched).
        for name, outputs in sorted(self._output_matches.items()):
            if name.rsplit("/", 1)[-1] not in self._waiting_for:
                continue
            for topic, n in sorted(outputs.items()):
                if not topic.startswith("/tps/") or topic.startswith("/tps/graph/"):
                    continue
                readers = sum(1 for counts in self._input_matches.values() if counts.get(topic, 0) >= 1)
                if n < readers:
                    out.append(f"{name} {topic} (its writer matched {n} of {readers} readers)")
        return out

    def _on_poll(self) -> None:
        if self.finished:
            return
        if self._waiting_for:
            self._check_waiting_nodes()
        try:
            frame = self.core.poll(time.monotonic())
        except Exception as exc:  # noqa: BLE001 - a world failure ends the episode, not the node
            self.get_logger().error(f"simulation step failed, episode ended: {exc!r}")
            self.core.abort(f"world_error: {exc}")
            self.pub_diag.publish(conv.diagnostic_msg(
                NODE_NAME, [("sync", ERROR, f"simulation step failed: {exc}", {})],
                self._sim_stamp()))
            frame = None
        if frame is not None:
            if frame.republished:
                self.get_logger().info("no control yet: re-publishing step 0",
                                       throttle_duration_sec=5.0)
            if "step_timeout" in frame.events:
                self.get_logger().warning(f"step timeout before step {frame.step}",
                                          throttle_duration_sec=1.0)
            self._publish_frame(frame)
        if self.core.done and self.params.exit_on_end:
            self._publish_diagnostics()       # the final status: how the episode ended
            self.close()
            self.finished = True
            if not self.standalone:
                # Hosted on a shared executor (tps-bringup single_process): end the whole
                # process cleanly by shutting the context down after a short linger.
                self._exit_timer = self.create_timer(self.params.exit_linger_s, self._shutdown_context,
                                                     clock=self._wall)

    def _shutdown_context(self) -> None:
        self._exit_timer.cancel()
        self.get_logger().info("episode ended (exit_on_end): shutting down")
        self.context.try_shutdown()

    def _sim_stamp(self) -> float:
        return self.core.frame.stamp_s if self.core.frame is not None else 0.0

    def _quiet_start(self) -> bool:
        """Whether step 0's sensor data is still withheld: the waited nodes have not all subscribed
        and matched their readers yet (the hold's first two stages). A frame sent earlier reaches
        only the nodes already up: the stack's first control of step 0 was then computed by
        whichever nodes were ready (the arbiter chose the fallback when the planner was still
        loading), and the world advanced with it -- two identical episodes diverged by start-up
        timing. Withheld, step 0 goes out once every waited node can take it; only /clock (and
        /tf) go out meanwhile."""
        return bool(self._waiting_for) and self._matched_at_s is None

    def _publish_frame(self, frame) -> None:
        quiet = self._quiet_start()
        for topic, msg in conv.frame_messages(frame, self.params.scenario, self.params.seed,
                                              self.core.camera_info_fields, rig=self.core.rig):
            if quiet and topic not in (conv.TOPIC_CLOCK, conv.TOPIC_TF):
                continue
            self._publishers_by_topic[topic].publish(msg)

    def _publish_diagnostics(self) -> None:
        s = status_summary(self.core)
        level, message = s.level, s.message
        if self._startup_warnings:
            level, message = max(level, WARN), "; ".join([message, *self._startup_warnings])
        self.pub_diag.publish(conv.diagnostic_msg(NODE_NAME, [("sync", level, message,
                                                               s.values)], self._sim_stamp()))

    def close(self) -> None:
        """Write the episode log and close the world (idempotent)."""
        path = self.core.close()
        if path is not None:
            self.get_logger().info(f"episode log written to {path}")

    def destroy_node(self) -> None:
        # A host that stops the graph (single_process mode) only destroys the node: the
        # episode log must still be written.
        self.close()
        super().destroy_node()


NODE_CLASS = SimBridgeNode


def main(args=None) -> None:
    """Console script ``sim_bridge``."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = SimBridgeNode()
        node.standalone = True
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not node.finished:
            executor.spin_once(timeout_sec=0.05)
        # Let reliable subscribers fetch the last step before the writers disappear.
        linger_until = time.monotonic() + node.params.exit_linger_s
        while rclpy.ok() and time.monotonic() < linger_until:
            executor.spin_once(timeout_sec=0.05)
        if node.core.stats.end_reason.startswith("world_error"):
            code = 1
    except ParameterError as exc:
        print(f"sim_bridge: bad parameter: {exc}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError as exc:
        if not is_requested_shutdown(exc):  # a signal mid wait-set build raises RCLError: a clean stop
            # the world could not start (e.g. SUMO refused the ego)
            print(f"sim_bridge: could not start the episode: {exc}", file=sys.stderr)
            code = 1
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
