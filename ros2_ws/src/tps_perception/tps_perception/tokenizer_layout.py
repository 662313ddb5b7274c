"""The Agent-Centric Tokenizer's geometry and target layout, in plain numpy (no torch).

Shared by the network (:mod:`tps_perception.tokenizer_model`, torch), the runtime core
(:mod:`tps_perception.tokenizer`, which must not import torch unless the torch backend is
chosen), training and evaluation.

What the tokenizer reads
    The frozen detector's **head input** ``features`` (C = 32 channels, 64 x 64 cells of 1.6 m,
    the tensor both head branches read; ``export.tokenizer`` exposes it as a third output of the
    detector graphs). For each detected agent a small **box-aligned rotated grid** of
    ``grid x grid`` points is bilinearly sampled from it: the grid spans the box grown by
    ``margin_m`` on every side (at least ``min_extent_m``), axis 0 along the box length.

What an agent code must reproduce (:data:`HEAD_TARGETS`)
    What the frozen detection stack says about the agent, minus *where* it is: the head's class
    logits at the agent's cell, its box z, log length/width/height and heading (sin, cos; the
    published heading, after the tracker's front/back alignment) and the tracker's over-ground
    velocity (base_link axes). The network sees one frame and cannot see motion, so velocity
    enters the encoder as an input beside the sampled features and is reconstructed from the code
    like the head outputs (see the package README, "Tokenizer").

Scene tokens
    The feature map average- and max-pooled over ``scene_grid x scene_grid`` square regions
    (4 x 4 regions of 25.6 m at the defaults), one token each, row-major (x major, then y).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from tps_perception.head_layout import CLASS_IDS, CLASS_NAMES

HEAD_TARGETS = (*(f"logit_{n}" for n in CLASS_NAMES), "z", "log_l", "log_w", "log_h", "sin_yaw", "cos_yaw",
                "vx", "vy")
N_CLASS = len(CLASS_NAMES)
I_Z, I_LOG_L, I_LOG_W, I_LOG_H, I_SIN, I_COS, I_VX, I_VY = range(N_CLASS, N_CLASS + 8)
VELOCITY_SCALE_MPS = 10.0   # velocities enter and leave the network divided by this
LOGIT_CLIP = 8.0            # head logits are clipped to +-this before they become targets
SIZE_LOG_CLIP = (-3.0, 4.0)  # as the detector's decode (postprocess.decode)


@dataclass(frozen=True)
class TokenizerConfig:
    """Shape of the tokenizer (the shipped size is the default)."""

    feature_channels: int = 32     # detector head input channels
    grid: int = 5                  # sampling points per side of the agent grid
    margin_m: float = 1.6          # the grid spans the box grown by this on every side (one output cell)
    min_extent_m: float = 4.0      # ... and at least this along each axis (pedestrians, cyclists)
    range_m: float = 51.2          # BEV half extent (the detector grid's)
    hidden: int = 128              # encoder/decoder width
    code_dim: int = 64             # VQ code dimension
    codebook_size: int = 512       # agent codebook K
    scene_grid: int = 4            # scene tokens: scene_grid^2 regions of the BEV map
    scene_codebook_size: int = 64  # scene codebook (capacity-limited on purpose)
    max_agents: int = 128          # static agent slots of the exported graph (padded; more are chunked)

    @property
    def points(self) -> int:
        return self.grid * self.grid

    @property
    def patch_dim(self) -> int:
        return self.feature_channels * self.points

    @property
    def scene_tokens(self) -> int:
        return self.scene_grid * self.scene_grid

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TokenizerConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _boxes(boxes: np.ndarray, dtype) -> np.ndarray:
    b = np.asarray(boxes, dtype)
    if b.ndim != 2 or b.shape[1] < 7:
        raise ValueError(f"boxes must be (N, >=7) x, y, z, l, w, h, yaw; got shape {b.shape}")
    return b


def grid_offsets(cfg: TokenizerConfig) -> np.ndarray:
    """(P, 2) unit offsets in [-0.5, 0.5] of the grid points (axis 0 along the box length)."""
    u = np.linspace(-0.5, 0.5, cfg.grid)
    uu, vv = np.meshgrid(u, u, indexing="ij")
    return np.stack([uu.ravel(), vv.ravel()], axis=1)


def agent_sample_points(boxes: np.ndarray, cfg: TokenizerConfig) -> np.ndarray:
    """Sampling points of each agent's box-aligned grid.

    Args:
        boxes: (N, >=7) x, y, z, l, w, h, yaw in base_link (m, rad).
        cfg: tokenizer configuration.

    Returns:
        (N, P, 2) float32 x, y of the grid points in base_link, m.
    """
    b = _boxes(boxes, np.float64)
    ext_l = np.maximum(b[:, 3] + 2 * cfg.margin_m, cfg.min_extent_m)
    ext_w = np.maximum(b[:, 4] + 2 * cfg.margin_m, cfg.min_extent_m)
    off = grid_offsets(cfg)                                   # (P, 2)
    u = off[None, :, 0] * ext_l[:, None]                      # along the length
    v = off[None, :, 1] * ext_w[:, None]
    c, s = np.cos(b[:, 6])[:, None], np.sin(b[:, 6])[:, None]
    x = b[:, 0:1] + c * u - s * v
    y = b[:, 1:2] + s * u + c * v
    return np.stack([x, y], axis=-1).astype(np.float32)


def normalized_grid(points_xy: np.ndarray, range_m: float) -> np.ndarray:
    """Points (..., 2) x, y [m] -> ``grid_sample`` coordinates (..., 2): [..., 0] indexes the
    map's width (columns = y), [..., 1] its height (rows = x); -1 / +1 are the outer edges of the
    map (``align_corners=False``), so the normalised coordinate is simply metres / range."""
    p = np.asarray(points_xy, np.float32)
    return np.stack([p[..., 1], p[..., 0]], axis=-1) / np.float32(range_m)


def bilinear_sample(features: np.ndarray, points_xy: np.ndarray, range_m: float) -> np.ndarray:
    """Reference bilinear sampler (numpy), the same as torch ``grid_sample(mode='bilinear',
    padding_mode='zeros', align_corners=False)`` on :func:`normalized_grid` coordinates.

    Args:
        features: (C, H, W) map; row i covers x in [-range + i*cell, -range + (i+1)*cell).
        points_xy: (N, P, 2) x, y in base_link, m.
        range_m: map half extent, m.

    Returns:
        (N, C, P) float32 (zero outside the map).
    """
    feat = np.asarray(features, np.float32)
    c, h, w = feat.shape
    p = np.asarray(points_xy, np.float64)
    fi = (p[..., 0] + range_m) / (2 * range_m) * h - 0.5     # row coordinate, cell centres at .0
    fj = (p[..., 1] + range_m) / (2 * range_m) * w - 0.5
    i0 = np.floor(fi).astype(np.int64)
    j0 = np.floor(fj).astype(np.int64)
    di = fi - i0
    dj = fj - j0
    out = np.zeros((c,) + p.shape[:-1], np.float64)
    for ii, jj, wt in ((i0, j0, (1 - di) * (1 - dj)), (i0 + 1, j0, di * (1 - dj)),
                       (i0, j0 + 1, (1 - di) * dj), (i0 + 1, j0 + 1, di * dj)):
        ok = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
        vals = feat[:, np.clip(ii, 0, h - 1), np.clip(jj, 0, w - 1)]
        out += np.where(ok, wt, 0.0)[None] * vals
    return np.moveaxis(out, 0, -2).astype(np.float32)


def scene_pool(features: np.ndarray, scene_grid: int) -> np.ndarray:
    """(C, H, W) -> (S, 2C): mean then max of each of the ``scene_grid^2`` regions, row-major."""
    c, h, w = features.shape
    r = features.reshape(c, scene_grid, h // scene_grid, scene_grid, w // scene_grid)
    mean = r.mean(axis=(2, 4)).reshape(c, -1).T
    mx = r.max(axis=(2, 4)).reshape(c, -1).T
    return np.concatenate([mean, mx], axis=1).astype(np.float32)


def cell_of(xy: np.ndarray, out_cell_m: float, range_m: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Output-map cell (row, col) holding each point (N, 2), clipped to the map."""
    ij = np.floor((np.asarray(xy, np.float64) + range_m) / out_cell_m).astype(np.int64)
    ij = np.clip(ij, 0, size - 1)
    return ij[:, 0], ij[:, 1]


def head_targets(heatmap_logits: np.ndarray, boxes: np.ndarray, velocities: np.ndarray, out_cell_m: float,
                 range_m: float) -> np.ndarray:
    """What an agent's code must reproduce (:data:`HEAD_TARGETS`) for each detection.

    Args:
        heatmap_logits: (K, h, w) the head's class logits.
        boxes: (N, >=7) decoded boxes (x, y, z, l, w, h, yaw; yaw as published).
        velocities: (N, 2) tracker velocity, m/s, base_link axes.

    Returns:
        (N, 13) float32: logits (clipped to +-LOGIT_CLIP) at the agent's cell, z, log l/w/h,
        sin/cos yaw, vx/VELOCITY_SCALE_MPS, vy/VELOCITY_SCALE_MPS.
    """
    b = _boxes(boxes, np.float32)
    n = len(b)
    out = np.zeros((n, len(HEAD_TARGETS)), np.float32)
    if n == 0:
        return out
    i, j = cell_of(b[:, :2], out_cell_m, range_m, heatmap_logits.shape[-1])
    out[:, :N_CLASS] = np.clip(heatmap_logits[:, i, j].T, -LOGIT_CLIP, LOGIT_CLIP)
    out[:, I_Z] = b[:, 2]
    out[:, I_LOG_L:I_LOG_H + 1] = np.log(np.maximum(b[:, 3:6], 1e-3))
    out[:, I_SIN] = np.sin(b[:, 6])
    out[:, I_COS] = np.cos(b[:, 6])
    out[:, I_VX:I_VY + 1] = np.asarray(velocities, np.float32).reshape(n, 2) / VELOCITY_SCALE_MPS
    return out


@dataclass
class DecodedAgent:
    """Agent attributes read back from head-target vectors (decoded from codes or not)."""

    class_id: np.ndarray   # (N,) uint8 DetectedAgent.CLASS_* id
    size: np.ndarray       # (N, 3) l, w, h, m
    yaw: np.ndarray        # (N,) rad
    velocity: np.ndarray   # (N, 2) m/s
    z: np.ndarray          # (N,) m


def decode_targets(vec: np.ndarray) -> DecodedAgent:
    """(N, 13) head-target vectors -> class, size, heading, velocity (SI units)."""
    v = np.asarray(vec, np.float64).reshape(-1, len(HEAD_TARGETS))
    cls = np.asarray(CLASS_IDS, np.uint8)[np.argmax(v[:, :N_CLASS], axis=1)] if len(v) else np.zeros(0, np.uint8)
    size = np.exp(np.clip(v[:, I_LOG_L:I_LOG_H + 1], *SIZE_LOG_CLIP))
    yaw = np.arctan2(v[:, I_SIN], v[:, I_COS])
    vel = v[:, I_VX:I_VY + 1] * VELOCITY_SCALE_MPS
    return DecodedAgent(cls, size, yaw, vel, v[:, I_Z])
