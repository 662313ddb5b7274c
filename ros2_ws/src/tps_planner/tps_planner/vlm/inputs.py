"""One frame's planner inputs from what the vehicle has (numpy, no torch, no ROS): the trainer
(from dataset shards), the planner node (from messages) and the open-loop evaluation (from fresh
episodes) all build the model's inputs here, so a frame is encoded one way everywhere.

:func:`frame_inputs` returns a dict of numpy arrays for one frame (agent slots padded to
``cfg.max_agents``, nearest first); :func:`stack_frames` stacks frames into a batch (numpy), which
:func:`tps_planner.vlm.model.to_torch_batch` (or the ONNX runtime) consumes.

Keys (A = ``cfg.max_agents``; batch arrays get a leading B):
``camera`` (H, W, 3) uint8 (zeros when ``camera_valid`` is False), ``camera_valid`` () bool,
``ego`` (EGO_DIM,) float32, ``agent_codes`` (A,) int64 (``codebook_size`` = padding),
``agent_feats`` (A, AGENT_DIM) float32, ``agent_mask`` (A,) bool, ``agent_ids`` (A,) int64 (track id,
-1 padding; not a model input: the rationale and the node name agents with it), ``agent_index``
(A,) int64 (row of the caller's token array, -1 padding).
"""

from __future__ import annotations

import numpy as np

from tps_planner.vlm.layout import (
    AGENT_DIM,
    PlannerConfig,
    agent_features,
    ego_accel_input,
    ego_features,
    select_agents,
)

MODEL_KEYS = ("camera", "camera_valid", "ego", "agent_codes", "agent_feats", "agent_mask")


def frame_inputs(cfg: PlannerConfig, *, speed_mps: float, accel_mps2: float, yaw_rate_rps: float,
                 route_xy: np.ndarray, pose: np.ndarray, stop_line_m: float | None, target_speed_mps: float,
                 tok_code: np.ndarray, tok_geom: np.ndarray, tok_qerr: np.ndarray,
                 tok_id: np.ndarray | None = None, image: np.ndarray | None = None) -> dict:
    """The model inputs of one frame (module docstring).

    Args:
        speed_mps, accel_mps2, yaw_rate_rps, route_xy, pose, stop_line_m, target_speed_mps: see
            :func:`tps_planner.vlm.layout.ego_features`.
        tok_code: (N,) VQ codes; tok_geom: (N, 7) base_link geometry; tok_qerr: (N,) quantisation
            errors; tok_id: (N,) track ids (optional).
        image: (H, W, 3) uint8 front camera; None = no frame (camera tokens masked). Resized to
            ``cfg.camera_size`` (area) when it differs.

    Raises:
        ValueError: malformed or non-finite input, named.
    """
    a = int(cfg.max_agents)
    code = np.asarray(tok_code).reshape(-1)
    geom = np.asarray(tok_geom, np.float64).reshape(-1, 7) if np.size(tok_geom) else np.zeros((0, 7))
    qerr = np.asarray(tok_qerr, np.float64).reshape(-1)
    if not (len(code) == len(geom) == len(qerr)):
        raise ValueError(f"agent tokens disagree in length: {len(code)} codes, {len(geom)} geometries, "
                         f"{len(qerr)} quantisation errors")
    if len(code) and (code.min() < 0 or code.max() >= cfg.codebook_size):
        raise ValueError(f"agent token code out of range 0..{cfg.codebook_size - 1}: {int(code.min())}..{int(code.max())}")
    ids = np.arange(len(code)) if tok_id is None else np.asarray(tok_id).reshape(-1)
    ego = ego_features(float(speed_mps), ego_accel_input(cfg, accel_mps2), float(yaw_rate_rps), np.asarray(route_xy, np.float64),
                       np.asarray(pose, np.float64), stop_line_m, float(target_speed_mps),
                       cfg.route_points, cfg.route_spacing_m)
    sel = select_agents(geom, a) if len(geom) else np.zeros(0, np.int64)
    n = len(sel)
    codes = np.full(a, cfg.codebook_size, np.int64)
    feats = np.zeros((a, AGENT_DIM), np.float32)
    mask = np.zeros(a, bool)
    agent_ids = np.full(a, -1, np.int64)
    index = np.full(a, -1, np.int64)
    if n:
        codes[:n] = code[sel]
        feats[:n] = agent_features(geom[sel], qerr[sel])
        mask[:n] = True
        agent_ids[:n] = ids[sel]
        index[:n] = sel
    w, h = cfg.camera_size
    if image is None:
        cam, valid = np.zeros((h, w, 3), np.uint8), False
    else:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"camera image must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
        if img.shape[:2] != (h, w):
            import cv2

            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        cam, valid = img, True
    return {"camera": cam, "camera_valid": np.bool_(valid), "ego": ego, "agent_codes": codes,
            "agent_feats": feats, "agent_mask": mask, "agent_ids": agent_ids, "agent_index": index}


def stack_frames(frames: list[dict]) -> dict:
    """Frames of :func:`frame_inputs` -> one batch (numpy, leading axis B)."""
    if not frames:
        raise ValueError("no frames to stack")
    return {k: np.stack([f[k] for f in frames]) for k in frames[0]}
