"""Shared pieces of the VLM planner tests: a small random batch with every input and target."""

from __future__ import annotations

import torch
from tps_planner.vlm.layout import AGENT_DIM, PlannerConfig


def random_batch(cfg: PlannerConfig, b: int = 2, a: int = 5, seed: int = 0, n_valid: tuple = (3, 0)) -> dict:
    """A batch of ``b`` frames with ``a`` agent slots; frame i has ``n_valid[i]`` real agents."""
    g = torch.Generator().manual_seed(seed)
    w, h = cfg.camera_size
    t = cfg.max_text_tokens
    ids = torch.zeros(b, t, dtype=torch.long)
    ids[:, 0], ids[:, 1:4], ids[:, 4] = 101, torch.randint(1000, 5000, (b, 3), generator=g), 102
    text_mask = ids > 0
    agent_mask = torch.zeros(b, a, dtype=torch.bool)
    for i, n in enumerate(n_valid[:b]):
        agent_mask[i, :n] = True
    feats = torch.randn(b, a, AGENT_DIM, generator=g) * 0.3
    return {
        "text_ids": ids, "text_mask": text_mask,
        "camera": torch.rand(b, 3, h, w, generator=g), "camera_valid": torch.ones(b, dtype=torch.bool),
        "ego": torch.randn(b, cfg.ego_dim, generator=g) * 0.3,
        "agent_codes": torch.randint(0, cfg.codebook_size, (b, a), generator=g),
        "agent_feats": feats, "agent_mask": agent_mask,
        "plan_target": torch.cumsum(torch.rand(b, cfg.plan_steps, 2, generator=g) * torch.tensor([4.0, 0.2]), 1),
        "plan_valid": torch.ones(b, cfg.plan_steps, dtype=torch.bool),
        "fut_target": feats[..., None, :2] * 50.0 + torch.cumsum(torch.rand(b, a, cfg.forecast_steps, 2, generator=g), 2),
        "fut_valid": agent_mask[..., None].expand(b, a, cfg.forecast_steps).clone(),
        "intent": torch.where(agent_mask, torch.randint(0, 9, (b, a), generator=g), torch.full((b, a), -1)),
        "relevance": (torch.rand(b, a, generator=g) > 0.5).float(),
        "lead": torch.tensor([0] + [a] * (b - 1)),
        "scene": torch.randint(0, 7, (b,), generator=g), "light": torch.randint(0, 4, (b,), generator=g),
    }


def write_fake_shard(root, split: str, scenario: str, seed: int, n: int = 4, a: int = 64, g: int = 8,
                     image_size: tuple = (160, 90), n_tokens: int = 5, lead=None,
                     lane_change=None):
    """A shard with the keys of training.planner_data (random but well-formed content)."""
    import json

    import numpy as np

    rng = np.random.default_rng(seed)
    w, h = image_size
    mask = np.zeros((n, a), bool)
    mask[:, :n_tokens] = True
    geom = np.zeros((n, a, 7), np.float32)
    geom[:, :n_tokens] = rng.normal(0, 10, (n, n_tokens, 7))
    geom[..., 3:5] = np.abs(geom[..., 3:5]) + 1.0
    plan = np.cumsum(np.tile([[4.0, 0.0]], (n, 8, 1)), 1).astype(np.float32)
    d = {
        "t_s": np.arange(n) * 0.5, "frame": np.arange(n, dtype=np.int32) * 5,
        "image": rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8),
        "ego_pose": np.column_stack([np.arange(n) * 4.0, np.zeros(n), np.zeros(n)]),
        "ego_speed": np.full(n, 8.0, np.float32), "ego_accel": np.zeros(n, np.float32),
        "ego_yaw_rate": np.zeros(n, np.float32), "stop_line_m": np.array([25.0] + [np.nan] * (n - 1), np.float32),
        "light": np.array([1] + [0] * (n - 1), np.int8), "route": np.array([[0.0, 0.0], [200.0, 0.0]]),
        "tok_id": np.arange(n * a, dtype=np.uint32).reshape(n, a), "tok_code": rng.integers(0, 512, (n, a)).astype(np.int32),
        "tok_geom": geom, "tok_qerr": np.abs(rng.normal(0, 1, (n, a))).astype(np.float32), "tok_mask": mask,
        "tok_gt": np.where(mask, 0, -1).astype(np.int32),
        "fut": np.repeat(geom[:, :, None, :2], 6, 2), "fut_valid": np.repeat(mask[..., None], 6, 2),
        "intent": np.where(mask, 1, -1).astype(np.int8), "relevance": mask.copy(),
        "lead": np.array(lead if lead is not None else [0] + [-2] * (n - 1), np.int16),
        "plan": plan, "plan_valid": np.ones((n, 8), bool),
        "gt_box": np.zeros((n, g, 9), np.float32), "gt_class": np.zeros((n, g), np.uint8),
        "gt_future": np.zeros((n, g, 6, 2), np.float32), "gt_future_valid": np.zeros((n, g, 6), bool),
        "gt_mask": np.zeros((n, g), bool),
        "meta_json": np.array(json.dumps({"scenario": scenario, "seed": seed, "split": split,
                                          "instruction": {"text": "turn right at the lights", "command": 2,
                                                          "exit_number": 0, "target_speed_mps": 12.0},
                                          "lane_change": lane_change})),
    }
    path = root / split / scenario / f"seed{seed}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **d)
    return path
