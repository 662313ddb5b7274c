"""The detection network (torch): BEV pillar tensor -> CenterPoint-style head maps.

Input ``bev`` (B, C_in, H, W) from :func:`tps_perception.pillars.points_to_bev`. Layout:

* stem: two 3x3 convs at full resolution (the learned pillar feature net acting on the pillar
  statistics, plus local context),
* backbone: three stages at strides 2, 4, 8 (conv-BN-ReLU blocks),
* neck: each stage upsampled to the output stride (``out_stride``, 2 by default) and concatenated
  (SECOND/CenterPoint style),
* head: a shared 3x3 conv, then 1x1 convs for per-class heatmap logits and the box regression.

Outputs (all at the output resolution, H / out_stride):

* ``heatmap`` (B, K, h, w): logits, K = len(CLASS_NAMES); sigmoid gives the centre likelihood.
* ``regression`` (B, 8, h, w): centre offset (2, in output cells from the cell corner), z of the
  box centre above ground (m), log length/width/height (log m), sin(yaw), cos(yaw).

Velocity is not regressed: a single frame cannot see motion; the tracker
(:mod:`tps_perception.tracker`) estimates it from consecutive frames.

Only plain Conv/BN/ReLU/ConvTranspose/Concat ops, so the ONNX export is static-shape and
quantises to static INT8 QDQ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from tps_perception.head_layout import CLASS_IDS, CLASS_NAMES, REG_CHANNELS
from tps_perception.pillars import BEV_CHANNELS

__all__ = ["CLASS_IDS", "CLASS_NAMES", "REG_CHANNELS", "CenterNet", "NetConfig"]


@dataclass(frozen=True)
class NetConfig:
    """Width/depth of the network (the shipped size is the default)."""

    in_channels: int = len(BEV_CHANNELS)
    stem: int = 24
    widths: tuple[int, int, int] = (32, 64, 128)
    depths: tuple[int, int, int] = (1, 2, 2)
    neck: int = 32
    head: int = 32
    out_stride: int = 2
    num_classes: int = len(CLASS_NAMES)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["depths"] = list(self.depths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        d["depths"] = tuple(d["depths"])
        return cls(**d)


def _cbr(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CenterNet(nn.Module):
    """Pillar BEV backbone + neck + CenterPoint-style head."""

    def __init__(self, cfg: NetConfig = NetConfig()):
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(_cbr(cfg.in_channels, cfg.stem), _cbr(cfg.stem, cfg.stem))
        stages = []
        cin = cfg.stem
        for w, d in zip(cfg.widths, cfg.depths, strict=True):
            layers = [_cbr(cin, w, stride=2)] + [_cbr(w, w) for _ in range(d)]
            stages.append(nn.Sequential(*layers))
            cin = w
        self.stages = nn.ModuleList(stages)
        ups = []
        for s, w in enumerate(cfg.widths):
            stride = 2 ** (s + 1)
            if stride == cfg.out_stride:
                ups.append(_cbr(w, cfg.neck, k=1))
            elif stride > cfg.out_stride:
                f = stride // cfg.out_stride
                ups.append(nn.Sequential(
                    nn.ConvTranspose2d(w, cfg.neck, f, stride=f, bias=False),
                    nn.BatchNorm2d(cfg.neck), nn.ReLU(inplace=True)))
            else:
                raise ValueError(f"out_stride {cfg.out_stride} finer than stage stride {stride}")
        self.ups = nn.ModuleList(ups)
        self.shared = _cbr(cfg.neck * len(cfg.widths), cfg.head)
        self.hm_head = nn.Sequential(_cbr(cfg.head, cfg.head), nn.Conv2d(cfg.head, cfg.num_classes, 1))
        self.reg_head = nn.Sequential(_cbr(cfg.head, cfg.head), nn.Conv2d(cfg.head, len(REG_CHANNELS), 1))
        # CenterNet prior: start with a low heatmap probability so the focal loss is stable.
        nn.init.constant_(self.hm_head[-1].bias, -2.19)

    def forward(self, bev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(bev)
        feats = []
        for stage, up in zip(self.stages, self.ups, strict=True):
            x = stage(x)
            feats.append(up(x))
        y = self.shared(torch.cat(feats, dim=1))
        return self.hm_head(y), self.reg_head(y)
