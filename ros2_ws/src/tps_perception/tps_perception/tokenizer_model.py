"""The Agent-Centric Tokenizer network (torch): sampled BEV features -> encoder -> VQ -> decoder.

Geometry and target layout live in :mod:`tps_perception.tokenizer_layout` (numpy, no torch).

* :class:`DetectorWithFeatures` runs the **frozen** :class:`~tps_perception.model.CenterNet`
  and also returns its head input ``features`` (B, 32, 64, 64) -- the tensor both head branches
  read, so "what the detection head sees" at every cell.
* :class:`AgentTokenizer`:

  - agent path: ``grid x grid`` box-aligned bilinear samples of the features (normalised per
    channel) + the tracker velocity -> MLP encoder -> :class:`VectorQuantizerEMA` (codebook K,
    EMA updates, dead-code restart, commitment loss) -> MLP decoder -> (sampled features,
    head targets: class logits, z, log size, heading, velocity);
  - scene path: the map mean/max-pooled over ``scene_grid^2`` regions -> MLP -> its own small
    codebook -> pooled features (+ per-class presence logits).

* :class:`TokenizerGraph` is the exported inference graph: ``features``, ``boxes`` (1, N, 7),
  ``velocity`` (1, N, 2) -> ``codes``, ``qerr`` (distance to the nearest code), ``scene_codes``,
  ``scene_qerr``. The sampling grid is computed in the graph from the boxes.

The quantiser's forward pass is side-effect free; training calls :meth:`VectorQuantizerEMA.ema_update`
and :meth:`VectorQuantizerEMA.restart_dead` explicitly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tps_perception.model import CenterNet
from tps_perception.tokenizer_layout import (
    HEAD_TARGETS,
    N_CLASS,
    VELOCITY_SCALE_MPS,
    TokenizerConfig,
    grid_offsets,
)

N_HEAD = len(HEAD_TARGETS)


class DetectorWithFeatures(nn.Module):
    """A CenterNet's forward pass that also returns its head input (weights shared, not copied)."""

    def __init__(self, net: CenterNet):
        super().__init__()
        self.net = net

    def forward(self, bev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self.net
        x = n.stem(bev)
        feats = []
        for stage, up in zip(n.stages, n.ups, strict=True):
            x = stage(x)
            feats.append(up(x))
        y = n.shared(torch.cat(feats, dim=1))
        return n.hm_head(y), n.reg_head(y), y


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode (BatchNorm statistics fixed) and no parameter takes a gradient."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class VectorQuantizerEMA(nn.Module):
    """Nearest-code vector quantiser with an exponential-moving-average codebook.

    Buffers (saved with the state dict): ``embedding`` (K, D), ``cluster_size`` (K,) the EMA of
    the (weighted) number of vectors assigned to each code per step, ``embed_sum`` (K, D),
    ``initialized``.
    """

    def __init__(self, num_codes: int, dim: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.num_codes = num_codes
        self.dim = dim
        self.decay = decay
        self.eps = eps
        self.register_buffer("embedding", torch.randn(num_codes, dim) * 0.1)
        self.register_buffer("cluster_size", torch.zeros(num_codes))
        self.register_buffer("embed_sum", self.embedding.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def nearest(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, D) -> code index (M,) int64 and distance to that code (M,) (L2, >= 0)."""
        e = self.embedding
        d2 = (z * z).sum(1, keepdim=True) - 2.0 * z @ e.t() + (e * e).sum(1)[None, :]
        idx = torch.argmin(d2, dim=1)
        dmin = torch.gather(d2, 1, idx[:, None])[:, 0]
        return idx, torch.sqrt(torch.clamp(dmin, min=0.0))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise (M, D): straight-through ``z_q`` (gradients flow to the encoder), index, error."""
        idx, qerr = self.nearest(z)
        q = self.embedding[idx]
        return z + (q - z).detach(), idx, qerr

    def commitment(self, z: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Weighted mean over vectors of ||z - sg(e_idx)||^2 / D."""
        per = ((z - self.embedding[idx].detach()) ** 2).mean(1)
        return (per * weight).sum() / weight.sum().clamp(min=1e-6)

    @torch.no_grad()
    def initialise(self, z: torch.Tensor, weight: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Codebook from encoder outputs drawn in proportion to ``weight`` (plus a little noise)."""
        pick = torch.multinomial(weight + 1e-8, self.num_codes, replacement=True, generator=generator)
        noise = 0.01 * z.std() * torch.randn(self.num_codes, self.dim, generator=generator)
        self.embedding.copy_(z[pick] + noise)
        self.cluster_size.fill_(float(weight.sum()) / self.num_codes)
        self.embed_sum.copy_(self.embedding * self.cluster_size[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def ema_update(self, z: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor) -> None:
        """EMA of each code's (weighted) assignment count and vector sum; code = sum / count.

        A vector of weight ~0 hardly moves its code. An unassigned code keeps its place (sum and
        count decay together; no Laplace smoothing, which would drag idle codes to the origin)
        until the dead-code restart moves it."""
        onehot = F.one_hot(idx, self.num_codes).to(z.dtype) * weight[:, None]
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1.0 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ z, alpha=1.0 - self.decay)
        live = self.cluster_size > self.eps * self.cluster_size.sum().clamp(min=self.eps)
        self.embedding[live] = self.embed_sum[live] / self.cluster_size[live, None]

    @torch.no_grad()
    def restart_dead(self, z: torch.Tensor, weight: torch.Tensor, dead_fraction: float,
                     generator: torch.Generator | None = None) -> int:
        """Move every code whose EMA count is below ``dead_fraction`` x the mean count onto an
        encoder output of this batch drawn in proportion to ``weight``; returns how many."""
        mean = self.cluster_size.mean()
        dead = torch.nonzero(self.cluster_size < dead_fraction * mean)[:, 0]
        if len(dead) == 0 or len(z) == 0:
            return 0
        pick = torch.multinomial(weight + 1e-8, len(dead), replacement=True, generator=generator)
        noise = 0.01 * z.std() * torch.randn(len(dead), self.dim, generator=generator)
        new = z[pick] + noise
        self.embedding[dead] = new
        self.cluster_size[dead] = mean
        self.embed_sum[dead] = new * mean
        return int(len(dead))


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class AgentTokenizer(nn.Module):
    """Agent tokens (box-aligned feature samples + velocity -> code) and scene tokens."""

    def __init__(self, cfg: TokenizerConfig | None = None):
        super().__init__()
        cfg = cfg or TokenizerConfig()
        self.cfg = cfg
        c, h, d = cfg.feature_channels, cfg.hidden, cfg.code_dim
        self.register_buffer("feat_mean", torch.zeros(c))
        self.register_buffer("feat_std", torch.ones(c))
        self.register_buffer("scene_mean", torch.zeros(2 * c))
        self.register_buffer("scene_std", torch.ones(2 * c))
        self.register_buffer("offsets", torch.from_numpy(grid_offsets(cfg)).float())   # (P, 2)
        self.encoder = _mlp([cfg.patch_dim + 2, h, h, d])
        self.vq = VectorQuantizerEMA(cfg.codebook_size, d)
        self.decoder = _mlp([d, h, h, cfg.patch_dim + N_HEAD])
        self.scene_encoder = _mlp([2 * c, h // 2, d])
        self.scene_vq = VectorQuantizerEMA(cfg.scene_codebook_size, d)
        self.scene_decoder = _mlp([d, h // 2, 2 * c + N_CLASS])

    # --- sampling ----------------------------------------------------------------------------
    def box_grid(self, boxes: torch.Tensor) -> torch.Tensor:
        """(B, N, >=7) boxes -> (B, N, P, 2) ``grid_sample`` coordinates of each agent's grid
        (the torch twin of ``tokenizer_layout.agent_sample_points`` + ``normalized_grid``)."""
        cfg = self.cfg
        ext_l = torch.clamp(boxes[..., 3] + 2 * cfg.margin_m, min=cfg.min_extent_m)
        ext_w = torch.clamp(boxes[..., 4] + 2 * cfg.margin_m, min=cfg.min_extent_m)
        u = self.offsets[:, 0] * ext_l[..., None]
        v = self.offsets[:, 1] * ext_w[..., None]
        c = torch.cos(boxes[..., 6])[..., None]
        s = torch.sin(boxes[..., 6])[..., None]
        x = boxes[..., 0:1] + c * u - s * v
        y = boxes[..., 1:2] + s * u + c * v
        return torch.stack([y, x], dim=-1) / cfg.range_m

    def sample(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) features, (B, N, >=7) boxes -> (B, N, C*P) normalised patches."""
        g = F.grid_sample(features, self.box_grid(boxes), mode="bilinear", padding_mode="zeros",
                          align_corners=False)                       # (B, C, N, P)
        g = (g - self.feat_mean[None, :, None, None]) / self.feat_std[None, :, None, None]
        b, c, n, p = g.shape
        return g.permute(0, 2, 1, 3).reshape(b, n, c * p)

    def scene_inputs(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, S, 2C) normalised region mean + max (row-major regions)."""
        k = features.shape[-1] // self.cfg.scene_grid
        mean = F.avg_pool2d(features, k).flatten(2).transpose(1, 2)
        mx = F.max_pool2d(features, k).flatten(2).transpose(1, 2)
        return (torch.cat([mean, mx], dim=2) - self.scene_mean) / self.scene_std

    # --- agent path ----------------------------------------------------------------------------
    def encode(self, patches: torch.Tensor, velocity_mps: torch.Tensor) -> torch.Tensor:
        """(M, C*P) normalised patches + (M, 2) velocity, m/s -> (M, D) encoder output."""
        return self.encoder(torch.cat([patches, velocity_mps / VELOCITY_SCALE_MPS], dim=1))

    def decode(self, z_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, D) code vectors -> (normalised patch (M, C*P), head targets (M, 13))."""
        out = self.decoder(z_q)
        return out[:, : self.cfg.patch_dim], out[:, self.cfg.patch_dim:]

    def decode_codes(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode from code indices alone (M,) -> (patch, head targets)."""
        return self.decode(self.vq.embedding[idx])

    def forward(self, patches: torch.Tensor, velocity_mps: torch.Tensor) -> dict[str, torch.Tensor]:
        """Agent path for training/evaluation: encoder output, quantised vector, code, error,
        reconstructions."""
        z = self.encode(patches, velocity_mps)
        zq, idx, qerr = self.vq(z)
        patch_hat, head_hat = self.decode(zq)
        return {"z": z, "zq": zq, "idx": idx, "qerr": qerr, "patch_hat": patch_hat, "head_hat": head_hat}

    # --- scene path ----------------------------------------------------------------------------
    def forward_scene(self, scene_in: torch.Tensor) -> dict[str, torch.Tensor]:
        """(M, 2C) normalised region vectors -> encoder output, code, error, reconstruction
        (pooled features (M, 2C), class-presence logits (M, 5))."""
        z = self.scene_encoder(scene_in)
        zq, idx, qerr = self.scene_vq(z)
        out = self.scene_decoder(zq)
        c2 = 2 * self.cfg.feature_channels
        return {"z": z, "zq": zq, "idx": idx, "qerr": qerr, "pooled_hat": out[:, :c2], "presence_hat": out[:, c2:]}


class TokenizerGraph(nn.Module):
    """The inference graph that is exported: features + boxes + velocities -> codes and errors.

    Inputs: ``features`` (1, C, H, W) the detector's head input; ``boxes`` (1, N, 7) x, y, z,
    l, w, h, yaw (base_link; padded rows are ignored by the caller); ``velocity`` (1, N, 2) m/s.
    Outputs: ``codes`` (1, N) int64, ``qerr`` (1, N), ``scene_codes`` (1, S) int64,
    ``scene_qerr`` (1, S).
    """

    def __init__(self, tok: AgentTokenizer):
        super().__init__()
        self.tok = tok

    def forward(self, features: torch.Tensor, boxes: torch.Tensor, velocity: torch.Tensor):
        t = self.tok
        patches = t.sample(features, boxes)[0]
        z = t.encode(patches, velocity[0])
        idx, qerr = t.vq.nearest(z)
        sz = t.scene_encoder(t.scene_inputs(features)[0])
        sidx, sqerr = t.scene_vq.nearest(sz)
        return idx[None], qerr[None], sidx[None], sqerr[None]
