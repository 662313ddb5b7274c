"""Classical traffic-light reader (core; no ROS, no learned model): the state of each known head
from the pixels of one camera image.

For each candidate head (map knowledge: ``tps_common.traffic_lights.LightHead``, from
``/carla/traffic_lights/info``):

1. **Geometry.** The three lamp centres of the light model (red top, yellow middle, green bottom,
   on the housing's front face) are moved into the camera's optical frame with
   ``T_optical<-map`` (the ego pose at the image's stamp composed with the camera extrinsic from
   the frame tree) and projected with the CameraInfo matrix K (no distortion). The head is
   ``NOT_FACING`` when its lamps face away from the camera by more than ``max_view_angle_deg``,
   ``OUT_OF_RANGE`` beyond ``max_range_m``, ``OUT_OF_VIEW`` when a lamp disc is not wholly inside
   the image (or behind the camera), ``TOO_SMALL`` when a lamp's radius in the image is below
   ``min_lamp_radius_px`` (too few pixels to read a colour).
2. **Pixels.** Each lamp disc projects to an ellipse (its radius along the head's lateral and
   vertical axes, projected: seen at an angle a lamp is narrower); it is sampled at the pixel
   centres within ``sample_fraction`` of that ellipse (at least the nearest pixel), and its
   smaller semi-axis is the lamp's radius in the image. A sample is *lit* in a colour when it is bright
   and saturated (HSV value >= ``lit_min_value``, saturation >= ``lit_min_saturation``) with a hue
   in that colour's band, *dark* when its value is <= ``dark_max_value``, else *other*. A lamp's
   verdict is the class of at least ``min_agreement`` of its samples, else *mixed*.
3. **Consistency.** The state is read only when exactly one lamp is lit, in its own colour (red
   on top, yellow in the middle, green at the bottom), and both others are dark; anything else
   -- an occluder in front of the head, a lamp mixed with background, two lit lamps, all dark --
   is ``UNREADABLE`` and the state UNKNOWN. A wrong colour would need an occluder that is dark
   exactly where the unlit lamps are and lamp-coloured exactly where the lit one is.

Confidence: the smallest agreement fraction of the three lamps (0 for UNKNOWN). Per frame, no
memory: temporal smoothing is the consumer's business (the fallback holds a state briefly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tps_common.frames import RigidTransform
from tps_common.traffic_lights import (
    GREEN,
    LAMP_ORDER,
    LAMP_RADIUS_M,
    RED,
    UNKNOWN,
    YELLOW,
    LightHead,
)

# Why a head was not read (tps_msgs/TrafficLightState.REASON_*, mirrored; a test checks).
REASON_NONE = 0
REASON_OUT_OF_VIEW = 1
REASON_OUT_OF_RANGE = 2
REASON_TOO_SMALL = 3
REASON_NOT_FACING = 4
REASON_UNREADABLE = 5
REASON_NO_CALIBRATION = 6
REASON_NAMES = {REASON_NONE: "read", REASON_OUT_OF_VIEW: "out_of_view",
                REASON_OUT_OF_RANGE: "out_of_range", REASON_TOO_SMALL: "too_small",
                REASON_NOT_FACING: "not_facing", REASON_UNREADABLE: "unreadable",
                REASON_NO_CALIBRATION: "no_calibration"}

_DARK, _OTHER = -1, -2        # sample / lamp classes besides the lit states
_MIXED = -3


@dataclass(frozen=True)
class ReaderParams:
    """Classical light reader parameters (config/schema/traffic_light_reader.schema.json).

    Hue bands are [lo, hi] in degrees (0..360; red wraps around 0).
    """

    max_range_m: float = 120.0
    min_lamp_radius_px: float = 0.75
    max_view_angle_deg: float = 60.0
    min_depth_m: float = 0.5
    sample_fraction: float = 0.6
    lit_min_value: float = 0.94
    lit_min_saturation: float = 0.7
    dark_max_value: float = 0.3
    min_agreement: float = 0.75
    red_hue_deg: tuple[float, float] = (340.0, 20.0)
    yellow_hue_deg: tuple[float, float] = (35.0, 65.0)
    green_hue_deg: tuple[float, float] = (95.0, 170.0)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"ReaderParams.{name} = {getattr(self, name)!r}: {why}")

        for name in ("max_range_m", "min_lamp_radius_px", "min_depth_m", "sample_fraction"):
            if not getattr(self, name) > 0.0:
                bad(name, "must be > 0")
        if not 0.0 < self.max_view_angle_deg <= 90.0:
            bad("max_view_angle_deg", "must be in (0, 90]")
        for name in ("lit_min_value", "lit_min_saturation", "dark_max_value", "min_agreement"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(name, "must be in [0, 1]")
        if self.dark_max_value >= self.lit_min_value:
            bad("dark_max_value", f"must be below lit_min_value ({self.lit_min_value})")
        if self.min_agreement <= 0.5:
            bad("min_agreement", "must be > 0.5 (a majority)")
        for name in ("red_hue_deg", "yellow_hue_deg", "green_hue_deg"):
            band = tuple(float(v) for v in getattr(self, name))
            if len(band) != 2 or not all(0.0 <= v <= 360.0 for v in band):
                bad(name, "must be two hues in [0, 360] degrees")
            object.__setattr__(self, name, band)


@dataclass(frozen=True)
class LightReading:
    """What the reader saw of one head in one image.

    Attributes:
        id: the head's id.
        state: RED / YELLOW / GREEN or UNKNOWN (``tps_common.traffic_lights``).
        confidence: [0, 1]; 0 when UNKNOWN.
        reason: ``REASON_*`` (REASON_NONE when read).
        distance_m: camera to housing centre [m].
        lamp_uv: (3, 2) projected red, yellow, green lamp centres [px] (NaN when behind).
        lamp_radius_px: projected lamp radius [px] (the smallest semi-axis of the three lamps'
            ellipses).
    """

    id: int
    state: int
    confidence: float
    reason: int
    distance_m: float
    lamp_uv: np.ndarray
    lamp_radius_px: float

    @property
    def reason_name(self) -> str:
        """``read``, ``out_of_view``, ``out_of_range``, ``too_small``, ``not_facing``,
        ``unreadable`` or ``no_calibration``."""
        return REASON_NAMES.get(self.reason, "unknown")


def _in_band(hue: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    lo, hi = band
    return (hue >= lo) & (hue <= hi) if lo <= hi else (hue >= lo) | (hue <= hi)


class TrafficLightReader:
    """Reads head states from camera images; see the module docstring."""

    def __init__(self, params: ReaderParams | None = None) -> None:
        self.params = params if params is not None else ReaderParams()
        self._cos_view = math.cos(math.radians(self.params.max_view_angle_deg))

    # -- pixels --------------------------------------------------------------------------------------
    def classify_pixels(self, rgb: np.ndarray) -> np.ndarray:
        """Classes of (N, 3) uint8 RGB samples: RED / YELLOW / GREEN when lit in that colour,
        else -1 (dark) or -2 (other)."""
        p = self.params
        c = np.asarray(rgb, np.float64).reshape(-1, 3)
        mx, mn = c.max(axis=1), c.min(axis=1)
        value = mx / 255.0
        sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-9), 0.0)
        r, g, b = c[:, 0], c[:, 1], c[:, 2]
        delta = np.maximum(mx - mn, 1e-9)
        hue = np.where(mx == r, (g - b) / delta % 6.0,
                       np.where(mx == g, (b - r) / delta + 2.0, (r - g) / delta + 4.0)) * 60.0
        out = np.full(c.shape[0], _OTHER, np.int64)
        out[value <= p.dark_max_value] = _DARK
        lit = (value >= p.lit_min_value) & (sat >= p.lit_min_saturation)
        for state, band in ((RED, p.red_hue_deg), (YELLOW, p.yellow_hue_deg),
                            (GREEN, p.green_hue_deg)):
            out[lit & _in_band(hue, band)] = state
        return out

    def _lamp_verdict(self, image: np.ndarray, uv: np.ndarray, axes: np.ndarray
                      ) -> tuple[int, float]:
        """(class, agreement fraction) of one lamp: a lit state, dark, other or mixed.

        ``axes`` (2, 2): the lamp disc's projected semi-axes (columns, pixels): the ellipse
        ``uv + axes @ (a, b)``, a^2 + b^2 <= 1."""
        f = self.params.sample_fraction
        u, v = float(uv[0]), float(uv[1])
        reach = f * np.abs(axes).sum(axis=1)
        xs = np.arange(math.ceil(u - reach[0]), math.floor(u + reach[0]) + 1)
        ys = np.arange(math.ceil(v - reach[1]), math.floor(v + reach[1]) + 1)
        gx, gy = np.meshgrid(xs, ys)
        rel = np.stack([gx.ravel() - u, gy.ravel() - v])
        try:
            coef = np.linalg.solve(axes, rel)
            inside = (coef ** 2).sum(axis=0) <= f * f
        except np.linalg.LinAlgError:
            inside = np.zeros(rel.shape[1], bool)
        px = np.stack([gx.ravel()[inside], gy.ravel()[inside]], axis=1)
        if px.shape[0] == 0:
            px = np.array([[int(round(u)), int(round(v))]])
        h, w = image.shape[:2]
        px = px[(px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)]
        if px.shape[0] == 0:
            return _MIXED, 0.0
        classes = self.classify_pixels(image[px[:, 1], px[:, 0]])
        values, counts = np.unique(classes, return_counts=True)
        best = int(np.argmax(counts))
        share = float(counts[best]) / classes.shape[0]
        if share < self.params.min_agreement:
            return _MIXED, share
        return int(values[best]), share

    @staticmethod
    def _project(kmat: np.ndarray, opt: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates of optical-frame points (N, 3) in front of the camera."""
        return np.stack([kmat[0, 0] * opt[:, 0] / opt[:, 2] + kmat[0, 2],
                         kmat[1, 1] * opt[:, 1] / opt[:, 2] + kmat[1, 2]], axis=1)

    # -- one image ------------------------------------------------------------------------------------
    def read(self, image: np.ndarray, k_matrix: np.ndarray | None,
             optical_to_map: RigidTransform, heads: Sequence[LightHead]) -> list[LightReading]:
        """Read every head of ``heads`` in one image.

        Args:
            image: (H, W, 3) uint8 RGB.
            k_matrix: (3, 3) camera matrix (CameraInfo K) [px]; None = no calibration yet.
            optical_to_map: ``T_map<-optical`` of the camera at the image's stamp.
            heads: the candidate heads.

        Returns:
            One :class:`LightReading` per head, in the order given.
        """
        p = self.params
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        h, w = img.shape[:2]
        cam = optical_to_map.translation
        map_to_optical = optical_to_map.inverse()
        out = []
        for head in heads:
            lamps = head.lamp_centres()
            to_cam = cam - head.position
            dist = float(np.linalg.norm(to_cam))
            nan_uv = np.full((3, 2), np.nan)
            if k_matrix is None:
                out.append(LightReading(head.id, UNKNOWN, 0.0, REASON_NO_CALIBRATION, dist, nan_uv,
                                        0.0))
                continue
            kmat = np.asarray(k_matrix, np.float64).reshape(3, 3)
            if float(np.dot(head.facing, to_cam)) < self._cos_view * max(dist, 1e-9):
                out.append(LightReading(head.id, UNKNOWN, 0.0, REASON_NOT_FACING, dist, nan_uv,
                                        0.0))
                continue
            if dist > p.max_range_m:
                out.append(LightReading(head.id, UNKNOWN, 0.0, REASON_OUT_OF_RANGE, dist, nan_uv,
                                        0.0))
                continue
            opt = map_to_optical.apply(lamps)
            z = opt[:, 2]
            if np.any(z < p.min_depth_m):
                out.append(LightReading(head.id, UNKNOWN, 0.0, REASON_OUT_OF_VIEW, dist, nan_uv,
                                        0.0))
                continue
            uv = self._project(kmat, opt)
            # The disc's semi-axes in the image: its lateral and vertical radii, projected.
            ends = map_to_optical.apply(np.concatenate([
                lamps + LAMP_RADIUS_M * head.lateral, lamps + LAMP_RADIUS_M * np.array([0, 0, 1.0])]))
            if np.any(ends[:, 2] < p.min_depth_m):
                out.append(LightReading(head.id, UNKNOWN, 0.0, REASON_OUT_OF_VIEW, dist, uv, 0.0))
                continue
            ends_uv = self._project(kmat, ends)
            axes = np.stack([ends_uv[:3] - uv, ends_uv[3:] - uv], axis=2)       # (3, 2, 2)
            radius = float(min(np.linalg.svd(a, compute_uv=False)[-1] for a in axes))
            extent = np.abs(axes).sum(axis=2)                                     # (3, 2)
            inside = np.all((uv - extent >= -0.5) & (uv + extent <= np.array([w, h]) - 0.5))
            if not inside:
                out.append(LightReading(head.id, UNKNOWN, 0.0, REASON_OUT_OF_VIEW, dist, uv,
                                        radius))
                continue
            if radius < p.min_lamp_radius_px:
                out.append(LightReading(head.id, UNKNOWN, 0.0, REASON_TOO_SMALL, dist, uv, radius))
                continue
            verdicts = [self._lamp_verdict(img, uv[i], axes[i]) for i in range(3)]
            lit = [(i, c) for i, (c, _) in enumerate(verdicts) if c in (RED, YELLOW, GREEN)]
            dark = [i for i, (c, _) in enumerate(verdicts) if c == _DARK]
            if len(lit) == 1 and len(dark) == 2 and LAMP_ORDER[lit[0][0]] == lit[0][1]:
                confidence = min(share for _, share in verdicts)
                out.append(LightReading(head.id, lit[0][1], confidence, REASON_NONE, dist, uv,
                                        radius))
            else:
                out.append(LightReading(head.id, UNKNOWN, 0.0, REASON_UNREADABLE, dist, uv, radius))
        return out
