"""Detector + Agent-Centric Tokenizer core: cloud -> detections + agent tokens. Never imports rclpy.

``PerceptionTokenizer(params, feature_backend, token_backend).run(points, t_s, ego_pose)``
returns a :class:`TokenizedResult`: the detector's output exactly as :class:`~tps_perception.
detector.Detector` gives it (the same object does the work), the agents as published (after
optional fault injection) and one :class:`AgentTokens` row per published agent, in the same order,
plus the frame's scene codes. The perception node and ``tps-eval tokenizer`` both call this.

The BEV feature map stays in this process: the feature backend returns the detector's head input
beside the head outputs, and the token backend reads it from memory (two ONNX graphs chained in one
process; the detections between them are decoded and tracked in numpy, as for the detector alone).
No torch import unless a torch backend was chosen (:mod:`tps_perception.tokenizer_backends`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tps_perception.detector import DetectionResult, Detector, DetectorParams
from tps_perception.faults import FaultInjector, FaultResult
from tps_perception.postprocess import Detections
from tps_perception.tokenizer_layout import TokenizerConfig

# bev (C_in, H, W) -> heatmap logits (K, h, w), regression (8, h, w), head input features (C, h, w)
FeatureBackend = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
# features (C, h, w), boxes (N, 7), velocities (N, 2) m/s -> codes (N,), qerr (N,), scene codes (S,),
# scene qerr (S,)
TokenBackend = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]

GEOMETRY_FIELDS = ("x", "y", "yaw", "length", "width", "vx", "vy")


@dataclass(frozen=True)
class TokenizerParams:
    """Everything the core needs besides the two networks."""

    detector: DetectorParams = field(default_factory=DetectorParams)
    config: TokenizerConfig = field(default_factory=TokenizerConfig)

    @staticmethod
    def from_meta(detector_meta: dict, tokenizer_meta: dict, **detector_overrides) -> TokenizerParams:
        """From ``detector.json`` and ``tokenizer.json`` (overrides as ``DetectorParams.from_meta``)."""
        return TokenizerParams(DetectorParams.from_meta(detector_meta, **detector_overrides),
                               TokenizerConfig.from_dict(tokenizer_meta["config"]))


@dataclass
class AgentTokens:
    """One frame's tokens; row k describes published agent k (AgentTokens.msg)."""

    agent_ids: np.ndarray     # (N,) uint32, the DetectedAgent ids (0 = untracked)
    codes: np.ndarray         # (N,) uint32 code index < codebook_size
    qerr: np.ndarray          # (N,) float32 distance of the encoder output to its code (novelty)
    geometry: np.ndarray      # (N, 7) float32 x, y, yaw, length, width, vx, vy (GEOMETRY_FIELDS)
    scene_codes: np.ndarray   # (S,) uint32, row-major scene regions
    scene_qerr: np.ndarray    # (S,) float32
    codebook_size: int
    scene_codebook_size: int

    def __len__(self) -> int:
        return len(self.codes)

    @staticmethod
    def empty(cfg: TokenizerConfig) -> AgentTokens:
        return AgentTokens(np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.float32),
                           np.zeros((0, len(GEOMETRY_FIELDS)), np.float32), np.zeros(0, np.uint32),
                           np.zeros(0, np.float32), cfg.codebook_size, cfg.scene_codebook_size)


@dataclass
class TokenizedResult:
    """One frame: the detector's result, the published agents (after faults) and their tokens."""

    detection: DetectionResult          # the detector's own output (stage timings inside)
    detections: Detections              # published agents (== detection.detections without faults)
    track_ids: np.ndarray               # (N,) uint32
    velocities: np.ndarray              # (N, 2) float32 m/s, base_link axes
    tokens: AgentTokens                 # row k <-> published agent k
    fault: FaultResult | None           # what the injector did (None without one)
    tokenize_ms: float
    features: np.ndarray | None = None  # (C, h, w) head input, only with keep_features

    @property
    def total_ms(self) -> float:
        return self.detection.total_ms + self.tokenize_ms


class _FeatureStash:
    """Adapts a feature backend to the detector's ``bev -> (heatmap, regression)`` callable and
    keeps the last feature map (and head logits) for the tokenizer."""

    def __init__(self, backend: FeatureBackend):
        self.backend = backend
        self.features: np.ndarray | None = None
        self.heatmap: np.ndarray | None = None

    def __call__(self, bev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hm, reg, feat = self.backend(bev)
        self.features, self.heatmap = feat, hm
        return hm, reg


class PerceptionTokenizer:
    """Detector + tokenizer on one point-cloud stream (stateful: the tracker)."""

    def __init__(self, params: TokenizerParams, feature_backend: FeatureBackend, token_backend: TokenBackend,
                 keep_features: bool = False):
        self.params = params
        self._stash = _FeatureStash(feature_backend)
        self.detector = Detector(params.detector, self._stash)
        self.token_backend = token_backend
        self.keep_features = keep_features

    def reset(self) -> None:
        self.detector.reset()

    @property
    def last_heatmap(self) -> np.ndarray | None:
        """Head logits (K, h, w) of the last frame the detector ran on (for evaluation)."""
        return self._stash.heatmap

    @property
    def last_features(self) -> np.ndarray | None:
        """Head input (C, h, w) of the last frame the detector ran on (for evaluation)."""
        return self._stash.features

    def tokenize(self, features: np.ndarray, boxes: np.ndarray, velocities: np.ndarray,
                 agent_ids: np.ndarray | None = None) -> AgentTokens:
        """Tokens of arbitrary boxes on a feature map (the published agents, or boxes under test).

        Args:
            features: (C, h, w) the detector's head input of this frame.
            boxes: (N, >=7) x, y, z, l, w, h, yaw, base_link.
            velocities: (N, 2) m/s, base_link axes.
            agent_ids: (N,) ids to carry (default zeros).
        """
        cfg = self.params.config
        b = np.asarray(boxes, np.float32)
        if b.size == 0:
            b = np.zeros((0, 7), np.float32)
        elif b.ndim != 2 or b.shape[1] < 7:
            raise ValueError(f"boxes must be (N, >=7) x, y, z, l, w, h, yaw; got shape {b.shape}")
        b = b[:, :7]
        v = np.asarray(velocities, np.float32).reshape(-1, 2)
        codes, qerr, scodes, sqerr = self.token_backend(features, b, v)
        geometry = np.stack([b[:, 0], b[:, 1], b[:, 6], b[:, 3], b[:, 4], v[:, 0], v[:, 1]], axis=1)
        ids = np.zeros(len(b), np.uint32) if agent_ids is None else np.asarray(agent_ids, np.uint32)
        return AgentTokens(ids, np.asarray(codes, np.uint32), np.asarray(qerr, np.float32),
                           geometry.astype(np.float32), np.asarray(scodes, np.uint32),
                           np.asarray(sqerr, np.float32), cfg.codebook_size, cfg.scene_codebook_size)

    def run(self, points: np.ndarray, t_s: float = 0.0, ego_pose: np.ndarray | None = None,
            faults: FaultInjector | None = None, sensor_to_base=None) -> TokenizedResult:
        """Detect, track, (optionally) inject faults, tokenize the published agents.

        Args:
            points: (N, 4) x, y, z, intensity in the lidar frame, m.
            t_s: cloud time, s (tracker).
            ego_pose: (3,) map x, y, yaw of base_link, or None.
            faults: applied to the detector's output before tokenizing (phantoms then get tokens
                too: their quantisation error is the novelty signal).
            sensor_to_base: the lidar extrinsic (as :meth:`Detector.run`; the BEV, its features
                and the boxes are then all in base_link).

        Raises:
            tps_perception.pillars.PreprocessError: bad cloud (shape, empty, NaN).
        """
        det = self.detector.run(points, t_s, ego_pose, sensor_to_base=sensor_to_base)
        features = self._stash.features
        fault = None
        boxes, ids, vel = det.detections, det.track_ids, det.velocities
        if faults is not None:
            fault = faults.apply(det.detections, det.track_ids, det.velocities, stamp_s=t_s)
            boxes, ids, vel = fault.detections, fault.track_ids, fault.velocities
        t0 = time.perf_counter()
        tokens = self.tokenize(features, boxes.boxes, vel, ids)
        tok_ms = 1e3 * (time.perf_counter() - t0)
        return TokenizedResult(det, boxes, ids, vel, tokens, fault, tok_ms,
                               features if self.keep_features else None)
