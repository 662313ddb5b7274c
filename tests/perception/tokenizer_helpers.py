"""Tiny detector + tokenizer pairs for the tokenizer tests (random weights, real code paths)."""

from __future__ import annotations

import numpy as np
import torch
from perception_helpers import box_points, ground_points
from tps_perception.model import CenterNet, NetConfig
from tps_perception.pillars import BevGridParams, points_to_bev
from tps_perception.tokenizer_layout import TokenizerConfig
from tps_perception.tokenizer_model import AgentTokenizer

TINY_NET = NetConfig(stem=8, widths=(8, 16, 16), depths=(1, 1, 1), neck=8, head=8)
TINY_TOK = TokenizerConfig(feature_channels=8, hidden=32, code_dim=16, codebook_size=64, scene_codebook_size=8,
                           max_agents=8)
GRID = BevGridParams()
DET_META = {"net": TINY_NET.to_dict(), "grid": {"range_m": GRID.range_m, "cell_m": GRID.cell_m, "lidar_height_m": 1.8},
            "decode": {"range_m": GRID.range_m, "out_cell_m": GRID.cell_m * TINY_NET.out_stride,
                       "score_threshold": 0.2, "max_detections": 100, "nms": True}}


def scene_cloud(k: int = 0, cars: int = 3) -> np.ndarray:
    parts = [ground_points(seed=k)]
    for c in range(cars):
        parts.append(box_points((6.0 + 7.0 * c, -3.0 + 2.5 * c), (4.5, 1.9, 1.5), 0.3 * c + 0.1 * k, seed=10 * k + c))
    return np.concatenate(parts)


def scene_bevs(n: int) -> list[np.ndarray]:
    return [points_to_bev(scene_cloud(k), GRID) for k in range(n)]


def tiny_detector(seed: int = 0) -> CenterNet:
    """A random tiny CenterNet with non-trivial BatchNorm statistics; the heatmap bias is raised so
    it finds peaks (a random net's logits sit at the -2.19 prior)."""
    torch.manual_seed(seed)
    net = CenterNet(TINY_NET)
    net.train()
    with torch.no_grad():
        for b in scene_bevs(3):
            net(torch.from_numpy(b[None]))
        net.hm_head[-1].bias.fill_(0.5)
    return net.eval()


def tiny_tokenizer(seed: int = 0) -> AgentTokenizer:
    torch.manual_seed(seed)
    tok = AgentTokenizer(TINY_TOK)
    with torch.no_grad():
        tok.vq.embedding.normal_()
        tok.scene_vq.embedding.normal_()
    return tok.eval()
