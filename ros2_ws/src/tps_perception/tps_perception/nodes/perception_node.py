"""perception_node: PointCloud2 -> DetectedAgents + AgentTokens (lidar 3D detector + tracker +
faults + Agent-Centric Tokenizer, one process).

Inputs: ``~/input/points`` (sensor_msgs/PointCloud2, sensor QoS, frame ``expected_frame``),
``~/input/odometry`` (nav_msgs/Odometry, optional: ego pose for over-ground track velocities),
``/clock`` (with use_sim_time and use_odometry), ``/tf_static`` and ``/tf`` (the lidar extrinsic
``T_output<-lidar``; ``lidar_extrinsic`` until the tree connects the cloud's frame, e.g. a bag
without TF).
Outputs: ``~/output/detections`` (tps_msgs/DetectedAgents, base_link, stamp = cloud stamp, one per
cloud), ``~/output/tokens`` (tps_msgs/AgentTokens, with ``tokenizer_enabled``: one per cloud, same
stamp, one token per published DetectedAgent with its id, in the same order, plus the frame's scene
codes), ``/diagnostics`` (``<node>: processing_time`` OK / WARN above ``processing_budget_ms`` /
ERROR above ``processing_error_budget_ms``, the whole frame incl. the tokenizer, stage times in its
values; ``<node>: input`` ERROR on a bad cloud; ``<node>: inference`` ERROR when the detector fails;
``<node>: tokenizer`` ERROR when the tokenizer fails; ``<node>: odometry`` ERROR on non-finite or
non-rotation (quaternion norm off 1) odometry). A bad cloud never stops the node: it answers with
an empty DetectedAgents and an empty AgentTokens whose status says why.

Detector fault injection (``fault_*`` parameters, tps_perception.faults; tests and the closed-loop
fault matrix): applied to the frames stamped in ``[fault_onset_s, fault_onset_s +
fault_duration_s)`` (0 = no end), which carry STATUS_FAULT_INJECTED; earlier frames are published
untouched with STATUS_OK, as from a healthy detector.

Process crash injection (``fault_crash_at_s`` >= 0, off by default; the process-fault tests): the
process dies with ``os._exit(EXIT_INJECTED_CRASH)`` (70, no cleanup) when the first cloud,
odometry or /clock stamped at or after that sim time arrives (tps_common.node.crash_if_due), like
planner_node; a process respawned by tps-bringup does not arm it (tps_common.node.injected_crash_time).

Detector and tokenizer run in this process (``tps_perception.tokenizer_backends.engine_pair``): the
detector graph returns its head input ``features`` beside the heads, the tokenizer graph reads it
from memory, so the BEV feature map never crosses DDS. Model files come from models/manifest.yaml
(``model_name``, ``tokenizer_model_name``; sha256-verified); the default is ONNX Runtime INT8 on a
CPU (``backend: auto`` picks TensorRT where it exists).

With ``use_odometry``, each cloud is processed with the ego pose *of its stamp*
(tps_common.stamp_sync): a cloud whose odometry has not arrived yet waits for it; the next cloud
or the clock passing its stamp releases it with the nearest pose within ``pose_tolerance_s``
(then the tracker's velocities are relative to the ego for that frame, and the diagnostics say so).

A repeated frame (the same stamp, frame, layout and bytes as the cloud just processed, with the same
pose) is answered with the outputs already published for it, not run again: the synchronous
bridge re-publishes step 0 until every node has answered, and the tracker and the fault injector
advance with every frame they see, so the count of repeats (a matter of start-up timing) changed
the tokens of the next frames (two identical full-stack episodes diverged at 0.1 s).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import PointCloud2
from tps_common import diagnostics as diag
from tps_common.conversions import odometry_to_pose, time_to_seconds
from tps_common.frames import parse_static_transform
from tps_common.node import crash_if_due, exit_now, injected_crash_time, load_params, run_node
from tps_common.qos import CLOCK_QOS, DIAGNOSTICS_QOS, STACK_OUTPUT_QOS, sensor_qos
from tps_common.stamp_sync import PoseKind, Release, StampSync, StampSyncParams
from tps_common.tf import ExtrinsicSource
from tps_inference import EngineParams
from tps_inference.lifecycle import BuildOnlyFinished, build_models, startup_warnings, summarize
from tps_msgs.msg import AgentTokens, DetectedAgents

from tps_perception.backends import engine_backend
from tps_perception.conversions import CloudError, cloud_to_points, detections_to_msg, tokens_to_msg
from tps_perception.detector import Detector, DetectorParams
from tps_perception.faults import FaultInjector, FaultParams
from tps_perception.pillars import PreprocessError
from tps_perception.postprocess import Detections
from tps_perception.tokenizer import PerceptionTokenizer, TokenizerParams

NODE_NAME = "perception"
ODOM_HISTORY = 50           # poses kept for stamp lookup (5 s at 10 Hz)
BUILD_ONLY_EXIT_DELAY_S = 0.01  # build_only: the report is logged, then the node exits from a timer


class PerceptionNode(Node):
    """Thin node around :class:`tps_perception.detector.Detector` and, with ``tokenizer_enabled``,
    :class:`tps_perception.tokenizer.PerceptionTokenizer` (the same Detector plus the tokenizer)."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("node_name", NODE_NAME)
        super().__init__(**kwargs)
        _, p = load_params(self, "perception_node")
        self.p = p
        self.engine_params = EngineParams(precision=p["trt_precision"], engine_cache_dir=p["engine_cache_dir"],
                                          rebuild_stale_engine=p["rebuild_stale_engine"])
        self.tokenizing = bool(p["tokenizer_enabled"])
        self.crash_at_s = injected_crash_time(p["fault_crash_at_s"])   # -1 (off) in a respawned process
        model_params = self._model_params()  # the manifest models this node loads -> their EngineParams
        if p["build_only"]:
            self._build_only(model_params)
            return
        for name, mp in model_params.items():
            for warning in startup_warnings([name], mp):
                self.get_logger().warning(warning)
        self.core: PerceptionTokenizer | None = None
        if self.tokenizing:
            from tps_perception.tokenizer_backends import engine_pair

            features, tokens, meta, tok_meta, what = engine_pair(p["model_name"], p["tokenizer_model_name"],
                                                                 self._run_params())
            self.core = PerceptionTokenizer(TokenizerParams.from_meta(
                meta, tok_meta, score_threshold=p["score_threshold"], track=p["track"]), features, tokens)
            self.detector = self.core.detector
            self.codebook_sizes = (self.core.params.config.codebook_size, self.core.params.config.scene_codebook_size)
        else:
            backend, meta, what = engine_backend(p["model_name"], p["backend"], p["threads"],
                                                 engine_params=self.engine_params)
            params = DetectorParams.from_meta(meta, score_threshold=p["score_threshold"], track=p["track"])
            self.detector = Detector(params, backend)
        self.backend_name = what
        # T_output<-lidar: from /tf_static (or /tf) once it connects the frames, else configured.
        self.extrinsic = ExtrinsicSource(
            self, target_frame=p["output_frame"], sensor_frame=p["expected_frame"] or "lidar",
            configured=parse_static_transform("lidar_extrinsic", p["lidar_extrinsic"]), name="lidar")
        self.faults = FaultInjector(FaultParams(
            blackout=p["fault_blackout"], drop_rate=p["fault_drop_rate"], phantom_rate=p["fault_phantom_rate"],
            position_noise_m=p["fault_position_noise_m"], heading_noise_rad=p["fault_heading_noise_rad"],
            latency_ms=p["fault_latency_ms"], seed=p["fault_seed"], onset_s=p["fault_onset_s"],
            duration_s=p["fault_duration_s"] if p["fault_duration_s"] > 0 else math.inf))
        self.sync: StampSync = StampSync(StampSyncParams(pose_tolerance_s=p["pose_tolerance_s"],
                                                         history_capacity=ODOM_HISTORY))
        self.tracking_in_map: bool | None = None
        self._frame_key: tuple | None = None            # the frame answered last (module docstring)
        self._frame_msg: PointCloud2 | None = None      # ... its message (a reference, not a copy)
        self._frame_outputs: list[tuple[object, object]] = []
        self.repeats_answered = 0
        self.pub = self.create_publisher(DetectedAgents, "~/output/detections", STACK_OUTPUT_QOS)
        self.token_pub = (self.create_publisher(AgentTokens, "~/output/tokens", STACK_OUTPUT_QOS)
                          if self.tokenizing else None)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        qos = sensor_qos(p["reliable_sensor_qos"])
        self.create_subscription(PointCloud2, "~/input/points", self.on_cloud,
                                 sensor_qos(p["reliable_sensor_qos"], latest_only=True))
        if p["use_odometry"]:
            self.create_subscription(Odometry, "~/input/odometry", self.on_odom, qos)
            if self.get_parameter("use_sim_time").value:
                self.create_subscription(Clock, "/clock", self.on_clock, CLOCK_QOS)
        models = p["model_name"] + (f" + {p['tokenizer_model_name']}" if self.tokenizing else "")
        self.get_logger().info(f"perception ready: model {models} on {what}"
                               + (f", FAULTS: {self.faults.params.describe()}" if self.faults.params.any_active else "")
                               + (f", INJECTED CRASH at {self.crash_at_s:g} s" if self.crash_at_s >= 0.0 else ""))

    def _run_params(self) -> EngineParams:
        return dataclasses.replace(self.engine_params, backend=self.p["backend"],
                                   intra_op_threads=self.p["threads"], inter_op_threads=1)

    def _model_params(self) -> dict[str, EngineParams]:
        """Manifest name -> EngineParams of every ONNX model this node loads (none with the torch
        backend); the tokenizer's carry the TensorRT profile of its dynamic agent axis."""
        if self.p["backend"] == "torch":
            return {}
        params = self._run_params()
        out = {self.p["model_name"]: params}
        if self.tokenizing:
            from tps_inference.manifest import Manifest

            from tps_perception.tokenizer_backends import load_tokenizer_meta, tokenizer_engine_params
            from tps_perception.tokenizer_layout import TokenizerConfig

            name = self.p["tokenizer_model_name"]
            cfg = TokenizerConfig.from_dict(load_tokenizer_meta(Manifest.load()[name].path.parent)["config"])
            out[name] = tokenizer_engine_params(params, int(cfg.max_agents))
        return out

    def _build_only(self, model_params: dict[str, EngineParams]) -> None:
        """build_only: build/validate every engine (tps_inference.lifecycle), log the report, exit
        (0 = every model ready) from a timer, so that run_node ends the node with that code."""
        text, code = summarize(build_models(list(model_params), model_params))
        log = self.get_logger().info if code == 0 else self.get_logger().error
        for line in text.splitlines():
            log(line)
        summary = text.splitlines()[-1]

        def finish() -> None:
            raise BuildOnlyFinished(summary, code)

        self.create_timer(BUILD_ONLY_EXIT_DELAY_S, finish)

    # ---------------------------------------------------------------- inputs
    def on_odom(self, msg: Odometry) -> None:
        crash_if_due(self, self.crash_at_s, time_to_seconds(msg.header.stamp), "odometry")
        res = self.sync.on_pose(odometry_to_pose(msg))
        if res.rejected:
            self._diag(msg.header.stamp, "odometry", diag.ERROR, f"odometry ignored: {res.rejected}", {})
        for r in res.released:
            self._process(r)

    def on_cloud(self, msg: PointCloud2) -> None:
        crash_if_due(self, self.crash_at_s, time_to_seconds(msg.header.stamp), "points")
        for r in self.sync.on_input(msg, time_to_seconds(msg.header.stamp), wait=self.p["use_odometry"]).released:
            self._process(r)

    def on_clock(self, msg: Clock) -> None:
        crash_if_due(self, self.crash_at_s, time_to_seconds(msg.clock), "/clock")
        for r in self.sync.on_clock(time_to_seconds(msg.clock)).released:
            self._process(r)

    # ---------------------------------------------------------------- detection
    def _fail(self, msg: PointCloud2, status: int, aspect: str, text: str, t0: float) -> None:
        self.get_logger().error(text, throttle_duration_sec=1.0)
        ms = 1e3 * (time.perf_counter() - t0)
        self._emit(self.pub, detections_to_msg(msg.header.stamp, self.p["output_frame"], Detections.empty(),
                                               np.zeros(0, np.uint32), np.zeros((0, 2), np.float32), status, text,
                                               ms))
        if self.token_pub is not None:
            self._emit(self.token_pub, tokens_to_msg(msg.header.stamp, self.p["output_frame"], None, status, text,
                                                     ms, *self.codebook_sizes))
        self._diag(msg.header.stamp, aspect, diag.ERROR, text,
                   {diag.PROCESSING_TIME_KEY: ms, "frame_id": msg.header.frame_id}, frame_output=True)

    def _emit(self, pub, msg) -> None:
        """Publish ``msg`` on ``pub`` and keep it as an output of the frame being processed."""
        pub.publish(msg)
        self._frame_outputs.append((pub, msg))

    @staticmethod
    def _key(msg: PointCloud2, r: Release, pose) -> tuple:
        """What makes two clouds the same frame besides their bytes: stamp, frame, layout and the
        pose used (the bytes are compared only when all of these match: :meth:`_is_repeat`)."""
        fields = tuple((f.name, f.offset, f.datatype, f.count) for f in msg.fields)
        return (r.stamp_s, msg.header.frame_id, msg.height, msg.width, msg.point_step, msg.row_step,
                msg.is_bigendian, fields, None if pose is None else tuple(float(v) for v in pose))

    def _is_repeat(self, key: tuple, msg: PointCloud2) -> bool:
        """Whether ``msg`` (with ``key``) is the frame answered last, byte for byte."""
        return (key == self._frame_key and bool(self._frame_outputs) and self._frame_msg is not None
                and msg.data == self._frame_msg.data)

    def _process(self, r: Release) -> None:
        t0 = time.perf_counter()
        msg: PointCloud2 = r.payload
        pose = (np.array([r.pose.x, r.pose.y, r.pose.yaw])
                if self.p["use_odometry"] and r.pose is not None else None)
        key = self._key(msg, r, pose)
        if self._is_repeat(key, msg):
            # a repeat of the frame just answered (module docstring): the same answer again
            self.repeats_answered += 1
            for pub, out in self._frame_outputs:
                pub.publish(out)
            return
        self._frame_key, self._frame_msg, self._frame_outputs = key, msg, []
        try:
            points = cloud_to_points(msg, self.p["expected_frame"])
            if self.tracking_in_map is not None and self.tracking_in_map != (pose is not None):
                self.detector.reset()  # the tracking frame changed (odometry appeared / vanished)
            self.tracking_in_map = pose is not None
            res = self.detector.run(points, r.stamp_s, pose,
                                    sensor_to_base=self.extrinsic.transform(msg.header.frame_id or None))
        except (CloudError, PreprocessError) as exc:
            self._fail(msg, DetectedAgents.STATUS_INVALID_INPUT, "input", f"invalid point cloud: {exc}", t0)
            return
        except Exception as exc:  # noqa: BLE001 - a model failure must not kill the node
            self._fail(msg, DetectedAgents.STATUS_INFERENCE_ERROR, "inference",
                       f"detector failed: {type(exc).__name__}: {exc}", t0)
            return
        # Outside [fault_onset_s, + fault_duration_s) the frame passes untouched with status OK.
        fr = self.faults.apply(res.detections, res.track_ids, res.velocities, stamp_s=r.stamp_s)
        if self.faults.params.latency_ms > 0 and fr.active:
            time.sleep(self.faults.params.latency_ms / 1e3)
        det_ms = 1e3 * (time.perf_counter() - t0)
        status, text = DetectedAgents.STATUS_OK, ""
        if fr.active:
            status, text = DetectedAgents.STATUS_FAULT_INJECTED, f"fault injected: {fr.description}"
        self._emit(self.pub, detections_to_msg(msg.header.stamp, self.p["output_frame"], fr.detections,
                                               fr.track_ids, fr.velocities, status, text, det_ms))
        values = {"preprocess_ms": res.preprocess_ms, "network_ms": res.network_ms,
                  "postprocess_ms": res.postprocess_ms, "detections": len(fr.detections),
                  "model": self.p["model_name"],
                  "velocity_frame": "relative" if res.velocity_is_relative else "over_ground"}
        if self.core is not None:
            values.update(self._publish_tokens(msg, fr, status, text, t0))
        ms = 1e3 * (time.perf_counter() - t0)
        if self.p["use_odometry"] and r.pose_kind is not PoseKind.EXACT:
            values["pose"] = r.note or r.pose_kind.value
        values.update(self.extrinsic.diagnostic_values(msg.header.frame_id or None))
        if self.repeats_answered:
            values["repeats_answered"] = self.repeats_answered
        self._emit(self.diag_pub, diag.array(msg.header.stamp, [diag.processing_time_status(
            self.get_name(), ms, self.p["processing_budget_ms"], self.p["processing_error_budget_ms"], values)]))

    def _publish_tokens(self, msg: PointCloud2, fr, status: int, text: str, t0: float) -> dict:
        """Tokens of the agents just published (the tokenizer reads this frame's feature map from
        memory: PerceptionTokenizer.tokenize, as PerceptionTokenizer.run does after the faults);
        returns diagnostic values. A tokenizer failure gives an empty AgentTokens with
        STATUS_INFERENCE_ERROR and a ``tokenizer`` ERROR diagnostic; the detections stand."""
        t1 = time.perf_counter()
        try:
            tokens = self.core.tokenize(self.core.last_features, fr.detections.boxes, fr.velocities, fr.track_ids)
            if len(tokens) != len(fr.detections):
                raise RuntimeError(f"{len(tokens)} tokens for {len(fr.detections)} agents")
        except Exception as exc:  # noqa: BLE001 - a model failure must not kill the node
            err = f"tokenizer failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(err, throttle_duration_sec=1.0)
            ms = 1e3 * (time.perf_counter() - t0)
            self._emit(self.token_pub, tokens_to_msg(msg.header.stamp, self.p["output_frame"], None,
                                                     AgentTokens.STATUS_INFERENCE_ERROR, err, ms,
                                                     *self.codebook_sizes))
            self._diag(msg.header.stamp, "tokenizer", diag.ERROR, err, {diag.PROCESSING_TIME_KEY: ms},
                       frame_output=True)
            return {"tokenize_ms": 1e3 * (time.perf_counter() - t1), "tokens": 0,
                    "tokenizer_model": self.p["tokenizer_model_name"]}
        tok_ms = 1e3 * (time.perf_counter() - t1)
        self._emit(self.token_pub, tokens_to_msg(msg.header.stamp, self.p["output_frame"], tokens, status, text,
                                                 1e3 * (time.perf_counter() - t0)))
        return {"tokenize_ms": tok_ms, "tokens": len(tokens), "scene_tokens": len(tokens.scene_codes),
                "tokenizer_model": self.p["tokenizer_model_name"]}

    def _diag(self, stamp, aspect: str, level: int, text: str, values: dict, frame_output: bool = False) -> None:
        """Publish one status; ``frame_output``: part of the answer to the frame being processed
        (a repeat of the frame gets it again)."""
        out = diag.array(stamp, [diag.status(f"{self.get_name()}: {aspect}", level, text, values)])
        if frame_output:
            self._emit(self.diag_pub, out)
        else:
            self.diag_pub.publish(out)


NODE_CLASS = PerceptionNode


def main(args=None) -> None:
    """Console script ``perception_node``. Ends with ``os._exit`` after the clean shutdown: the
    interpreter's teardown of its modules took 2.7-2.9 s after SIGINT (measured at load ~9, where
    rclpy's own shutdown took 13 ms), most of tps-bringup's 5-s stop grace
    (tps_common.node.exit_now)."""
    exit_now(run_node(NODE_CLASS, "perception_node", args))


if __name__ == "__main__":
    main()
