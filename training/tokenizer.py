"""Train the Agent-Centric Tokenizer and its untargeted ablation: ``python -m training.tokenizer``
(``make train-tokenizer``).

1. **Records** (:mod:`tps_eval.tokenizer.samples`): every frame of the chosen TRAIN episodes (and of
   VAL episodes, for model selection) runs through the **frozen** shipped detector (torch, eval
   mode, no parameter takes a gradient; its weights are hashed before and after and must be
   byte-identical) and the onboard core (decode, tracker). Kept per frame: the head input
   ``features`` (float16), the class heatmaps, the detections matched to ground truth with their
   tracker velocities and head targets. Cached under ``runs/tokenizer/cache/`` (keyed by the
   detector's sha256 and the episode list).
2. **Targeted** (the shipped tokenizer): agent samples are the detections matched to a real agent;
   background samples are boxes placed uniformly over the map. Feature reconstruction is weighted
   per grid point by the detection heatmap there (floor :data:`HEAT_FLOOR`), the sample weight
   of the VQ (EMA update, commitment, dead-code restart draws) is the heatmap at the box centre
   (the detection score for agents), and the decoder must reproduce the head targets of agents
   (class: cross-entropy to the detector's label + BCE to the head's probabilities; z, log size,
   heading, velocity: smooth L1). Scene tokens reconstruct the pooled map and the per-class
   presence (max heatmap) of their region.
3. **Untargeted** (the ablation, same architecture): uniform boxes over the whole map only,
   uniform weights, features only (no head or tracker targets, zero velocity input), scene
   tokens reconstruct the pooled map only.

Each variant trains for ``--epochs`` or ``--time-budget-min``, whichever ends first (cosine
learning rate on the larger of step share and time share), and keeps the epoch with the lowest
loss on VAL frames. Then a **code table** is fitted on TRAIN agents for both variants: per code, the
mean head targets of the agents assigned to it (class: the majority label) -- the same
"decode from the code alone" for both, used by ``tps-eval tokenizer``. Fixed seed, tqdm progress,
CSV logs under ``runs/tokenizer/<run>/``; ``--ship`` copies the weights + ``tokenizer.json`` to
``models/tokenizer/``. TEST seeds are never read here.
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tps_eval.detector.data import Frame, episode_frames, shard_paths, synthetic_frames
from tps_eval.tokenizer.samples import episode_records
from tps_perception.backends import default_model_dir, load_meta, load_torch_model, repo_root
from tps_perception.head_layout import CLASS_IDS
from tps_perception.tokenizer import PerceptionTokenizer, TokenizerParams
from tps_perception.tokenizer_backends import default_tokenizer_dir, torch_feature_backend, weights_name
from tps_perception.tokenizer_layout import HEAD_TARGETS, N_CLASS, TokenizerConfig
from tps_perception.tokenizer_model import AgentTokenizer
from tps_sim.splits import split_of
from tqdm import tqdm

EXTRACT_VERSION = 1
HEAT_FLOOR = 0.02          # targeted: feature-reconstruction weight of a grid point where the heatmap is ~0
VQ_HEAT_FLOOR = 1e-3       # targeted: VQ weight (EMA, commitment, restart draws) of a box whose centre heat is ~0
HEAD_WEIGHT = 1.0          # targeted: head-target loss
PRESENCE_WEIGHT = 0.5      # targeted: scene presence loss
COMMITMENT = 0.25          # beta
DEAD_FRACTION = 0.05       # a code whose EMA count is below this x the mean count is restarted
RESTART_EVERY = 25         # steps between dead-code restarts
WARMUP = 0.03
VARIANTS = ("targeted", "untargeted")


# --- records -> arrays -----------------------------------------------------------------------
@dataclass
class Bank:
    """Frames of one split packed for training (features float16)."""

    features: torch.Tensor      # (F, C, h, w) float16
    class_heat: torch.Tensor    # (F, K, h, w) float16
    agent_frame: np.ndarray     # (A,) int64 frame of each agent sample (detections matched to an agent)
    agent_box: np.ndarray       # (A, 7) float32
    agent_vel: np.ndarray       # (A, 2) float32 m/s
    agent_target: np.ndarray    # (A, 13) float32
    agent_score: np.ndarray     # (A,) float32
    agent_label: np.ndarray     # (A,) uint8 detector class id
    seeds: list[int]
    clutter: list[str]

    @property
    def frames(self) -> int:
        return int(self.features.shape[0])

    def agents_of(self) -> list[np.ndarray]:
        """Agent sample indices of each frame."""
        order = np.argsort(self.agent_frame, kind="stable")
        bounds = np.searchsorted(self.agent_frame[order], np.arange(self.frames + 1))
        return [order[bounds[f]:bounds[f + 1]] for f in range(self.frames)]


def build_bank(records: list) -> Bank:
    """Pack frame records; each record is released as soon as it is copied (``records`` ends
    up all None), so the features are held once, not twice."""
    n = len(records)
    feats = np.empty((n, *records[0].features.shape), np.float16)
    heat = np.empty((n, *records[0].class_heat.shape), np.float16)
    af, ab, av, at, asc, al, seeds, clutter = [], [], [], [], [], [], [], []
    for k in range(n):
        r = records[k]
        records[k] = None
        feats[k] = r.features
        heat[k] = r.class_heat
        m = (r.gt_index >= 0) & ~r.phantom
        af.append(np.full(int(m.sum()), k, np.int64))
        ab.append(r.boxes[m])
        av.append(r.velocities[m])
        at.append(r.targets[m])
        asc.append(r.scores[m])
        al.append(r.labels[m])
        seeds.append(r.seed)
        clutter.append(r.clutter)
    return Bank(torch.from_numpy(feats), torch.from_numpy(heat), np.concatenate(af),
                np.concatenate(ab).astype(np.float32), np.concatenate(av).astype(np.float32),
                np.concatenate(at).astype(np.float32), np.concatenate(asc).astype(np.float32),
                np.concatenate(al).astype(np.uint8), seeds, clutter)


def save_bank(bank: Bank, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, features=bank.features.numpy(), class_heat=bank.class_heat.numpy(), agent_frame=bank.agent_frame,
             agent_box=bank.agent_box, agent_vel=bank.agent_vel, agent_target=bank.agent_target,
             agent_score=bank.agent_score, agent_label=bank.agent_label, seeds=np.asarray(bank.seeds),
             clutter=np.asarray(bank.clutter))
    tmp.rename(path)


def load_bank(path: Path) -> Bank:
    with np.load(path) as z:
        return Bank(torch.from_numpy(z["features"]), torch.from_numpy(z["class_heat"]), z["agent_frame"],
                    z["agent_box"], z["agent_vel"], z["agent_target"], z["agent_score"], z["agent_label"],
                    [int(s) for s in z["seeds"]], [str(c) for c in z["clutter"]])


def state_sha256(module: torch.nn.Module) -> str:
    """sha256 over every tensor of a state dict (names, dtypes, shapes and bytes), in order."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extract(episodes: list[list[Frame]] | list[Path], net, det_meta: dict, cfg: TokenizerConfig, threads: int,
            desc: str) -> Bank:
    """Records of every frame of the episodes through the frozen detector (torch)."""
    core = PerceptionTokenizer(TokenizerParams.from_meta(det_meta, {"config": cfg.to_dict()}),
                               torch_feature_backend(net, threads), token_backend=None)
    records = []
    for ep in tqdm(episodes, desc=desc, unit="ep"):
        frames = list(episode_frames(ep)) if isinstance(ep, Path) else ep
        records += [rec for rec, _ in episode_records(frames, core)]
    return build_bank(records)


# --- batches and losses ------------------------------------------------------------------------
def random_boxes(n_frames: int, n: int, size_pool: np.ndarray, cfg: TokenizerConfig, rng: np.random.Generator
                 ) -> np.ndarray:
    """(B, n, 7) boxes placed uniformly over the map (centres within the map), uniform yaw, length
    and width drawn from the agents' sizes (so background patches have agent-like grids)."""
    lim = cfg.range_m - cfg.margin_m
    xy = rng.uniform(-lim, lim, size=(n_frames, n, 2))
    pick = rng.integers(0, len(size_pool), size=(n_frames, n))
    lw = size_pool[pick]
    yaw = rng.uniform(-np.pi, np.pi, size=(n_frames, n, 1))
    z = np.full((n_frames, n, 1), 0.8)
    h = np.full((n_frames, n, 1), 1.6)
    return np.concatenate([xy, z, lw, h, yaw], axis=2).astype(np.float32)


def make_batch(bank: Bank, frames: np.ndarray, agents_of: list[np.ndarray], variant: str, n_bg: int,
               size_pool: np.ndarray, cfg: TokenizerConfig, rng: np.random.Generator) -> dict:
    """Boxes, velocities, targets and weights of a batch of frames (agents first, then background)."""
    b = len(frames)
    if variant == "targeted":
        idx = [agents_of[f] for f in frames]
        n_ag = max(1, max(len(i) for i in idx))
    else:
        idx = [np.zeros(0, np.int64) for _ in frames]
        n_ag = 0
    n = n_ag + n_bg
    boxes = np.zeros((b, n, 7), np.float32)
    vel = np.zeros((b, n, 2), np.float32)
    tgt = np.zeros((b, n, len(HEAD_TARGETS)), np.float32)
    label = np.zeros((b, n), np.int64)
    score = np.zeros((b, n), np.float32)
    valid = np.zeros((b, n), bool)
    agent = np.zeros((b, n), bool)
    for k, ii in enumerate(idx):
        m = len(ii)
        boxes[k, :m] = bank.agent_box[ii]
        vel[k, :m] = bank.agent_vel[ii]
        tgt[k, :m] = bank.agent_target[ii]
        label[k, :m] = np.searchsorted(CLASS_IDS, bank.agent_label[ii])
        score[k, :m] = bank.agent_score[ii]
        valid[k, :m] = True
        agent[k, :m] = True
    boxes[:, n_ag:] = random_boxes(b, n_bg, size_pool, cfg, rng)
    valid[:, n_ag:] = True
    return {"frames": torch.from_numpy(np.asarray(frames)), "boxes": torch.from_numpy(boxes),
            "vel": torch.from_numpy(vel), "target": torch.from_numpy(tgt), "label": torch.from_numpy(label),
            "score": torch.from_numpy(score), "valid": torch.from_numpy(valid), "agent": torch.from_numpy(agent)}


def batch_loss(tok: AgentTokenizer, bank: Bank, batch: dict, variant: str) -> tuple[torch.Tensor, dict, dict]:
    """Loss of one batch, its parts, and what the quantisers need for their EMA updates."""
    targeted = variant == "targeted"
    feats = bank.features[batch["frames"]].float()
    heat_cls = bank.class_heat[batch["frames"]].float()
    boxes = batch["boxes"]
    with torch.no_grad():
        patches = tok.sample(feats, boxes)                                           # (B, N, C*P)
        grid = tok.box_grid(boxes)
        heat = heat_cls.max(1, keepdim=True).values
        pheat = F.grid_sample(heat, grid, align_corners=False)[:, 0]                # (B, N, P)
        cheat = F.grid_sample(heat, grid.mean(2, keepdim=True), align_corners=False)[:, 0, :, 0]
    valid = batch["valid"]
    agent = batch["agent"][valid]
    x = patches[valid]
    vel = batch["vel"][valid]
    if targeted:
        w_point = pheat[valid].clamp(min=HEAT_FLOOR)
        s = torch.where(agent, batch["score"][valid], cheat[valid].clamp(min=VQ_HEAT_FLOOR))
    else:
        w_point = torch.ones_like(pheat[valid])
        s = torch.ones(len(x))
        vel = torch.zeros_like(vel)
    out = tok(x, vel)
    c = tok.cfg.feature_channels
    err = ((out["patch_hat"] - x) ** 2).reshape(len(x), c, -1).mean(1)             # (M, P)
    l_feat = (err * w_point).sum() / w_point.sum()
    l_commit = tok.vq.commitment(out["z"], out["idx"], s)
    parts = {"feat": float(l_feat.detach()), "commit": float(l_commit.detach())}
    loss = l_feat + COMMITMENT * l_commit
    if targeted and bool(agent.any()):
        pred = out["head_hat"][agent]
        tgt = batch["target"][valid][agent]
        sa = s[agent]
        ce = F.cross_entropy(pred[:, :N_CLASS], batch["label"][valid][agent], reduction="none")
        bce = F.binary_cross_entropy_with_logits(pred[:, :N_CLASS], torch.sigmoid(tgt[:, :N_CLASS]),
                                                 reduction="none").mean(1)
        reg = F.smooth_l1_loss(pred[:, N_CLASS:], tgt[:, N_CLASS:], reduction="none", beta=0.1).mean(1)
        l_head = ((ce + bce + reg) * sa).sum() / sa.sum()
        loss = loss + HEAD_WEIGHT * l_head
        parts["head"] = float(l_head.detach())
    # scene tokens
    sin = tok.scene_inputs(feats)
    bsz, n_s, d_s = sin.shape
    sout = tok.forward_scene(sin.reshape(-1, d_s))
    l_scene = F.mse_loss(sout["pooled_hat"], sin.reshape(-1, d_s))
    sw = torch.ones(bsz * n_s)
    loss = loss + l_scene + COMMITMENT * tok.scene_vq.commitment(sout["z"], sout["idx"], sw)
    parts["scene"] = float(l_scene.detach())
    if targeted:
        k = heat_cls.shape[-1] // tok.cfg.scene_grid
        presence = F.max_pool2d(heat_cls, k).flatten(2).transpose(1, 2).reshape(-1, N_CLASS)
        l_pres = F.binary_cross_entropy_with_logits(sout["presence_hat"], presence)
        loss = loss + PRESENCE_WEIGHT * l_pres
        parts["presence"] = float(l_pres.detach())
    ema = {"z": out["z"].detach(), "idx": out["idx"], "s": s.detach(), "agent": agent,
           "sz": sout["z"].detach(), "sidx": sout["idx"], "sw": sw}
    return loss, parts, ema


def perplexity(idx: np.ndarray, k: int) -> float:
    if len(idx) == 0:
        return 0.0
    p = np.bincount(idx, minlength=k) / len(idx)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def set_norm_stats(tok: AgentTokenizer, bank: Bank, max_frames: int = 400) -> None:
    """Per-channel feature mean/std (every cell of up to ``max_frames`` maps) and those of the
    scene vectors, into the tokenizer's buffers."""
    sel = torch.linspace(0, bank.frames - 1, min(max_frames, bank.frames)).round().long()
    f = bank.features[sel].float()
    tok.feat_mean.copy_(f.mean((0, 2, 3)))
    tok.feat_std.copy_(f.std((0, 2, 3)).clamp(min=1e-3))
    tok.scene_mean.zero_()
    tok.scene_std.fill_(1.0)
    s = tok.scene_inputs(f).reshape(-1, tok.scene_mean.shape[0])
    tok.scene_mean.copy_(s.mean(0))
    tok.scene_std.copy_(s.std(0).clamp(min=1e-3))


@torch.no_grad()
def encode_agents(tok: AgentTokenizer, bank: Bank, variant: str, batch_frames: int = 32) -> np.ndarray:
    """Code of every agent sample of a bank (the untargeted variant gets zero velocity, as in its
    training)."""
    agents_of = bank.agents_of()
    idx_all = np.zeros(len(bank.agent_frame), np.int64)
    for a in range(0, bank.frames, batch_frames):
        frames = np.arange(a, min(bank.frames, a + batch_frames))
        sel = [agents_of[f] for f in frames]
        n = max(1, max(len(s) for s in sel))
        boxes = np.zeros((len(frames), n, 7), np.float32)
        for j, s in enumerate(sel):
            boxes[j, :len(s)] = bank.agent_box[s]
        patches = tok.sample(bank.features[torch.from_numpy(frames)].float(), torch.from_numpy(boxes))
        for j, s in enumerate(sel):
            if len(s):
                vel = bank.agent_vel[s] if variant == "targeted" else np.zeros((len(s), 2), np.float32)
                z = tok.encode(patches[j, :len(s)], torch.from_numpy(vel))
                idx_all[s] = tok.vq.nearest(z)[0].numpy()
    return idx_all


@torch.no_grad()
def evaluate(tok: AgentTokenizer, bank: Bank, variant: str, n_bg: int, size_pool: np.ndarray, seed: int,
             batch_frames: int) -> tuple[float, dict]:
    """Mean loss of the variant on a bank (background boxes from a fixed seed) and the code
    statistics of its agent samples."""
    tok.eval()
    rng = np.random.default_rng(seed)
    agents_of = bank.agents_of()
    tot = 0.0
    for a in range(0, bank.frames, batch_frames):
        frames = np.arange(a, min(bank.frames, a + batch_frames))
        loss, _, _ = batch_loss(tok, bank, make_batch(bank, frames, agents_of, variant, n_bg, size_pool, tok.cfg, rng),
                                variant)
        tot += float(loss) * len(frames)
    codes = encode_agents(tok, bank, variant, batch_frames)
    tok.train()
    return tot / max(1, bank.frames), {"agent_perplexity": round(perplexity(codes, tok.cfg.codebook_size), 1),
                                       "agent_codes_used": int(len(np.unique(codes)))}


@torch.no_grad()
def fit_code_table(tok: AgentTokenizer, bank: Bank, variant: str, batch_frames: int = 32
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per code, the mean head targets of the TRAIN agents assigned to it (class logits: log of
    the label frequencies, so argmax = majority label; heading: mean of sin/cos); codes no agent
    uses get the global mean. Returns (table (K, 13), agent count per code (K,))."""
    tok.eval()
    idx_all = encode_agents(tok, bank, variant, batch_frames)
    k = tok.cfg.codebook_size
    tgt = bank.agent_target
    table = np.tile(tgt.mean(0), (k, 1)).astype(np.float32)
    labels = np.searchsorted(CLASS_IDS, bank.agent_label)
    glob = np.bincount(labels, minlength=N_CLASS) + 1.0
    table[:, :N_CLASS] = np.log(glob / glob.sum())
    count = np.bincount(idx_all, minlength=k)
    for c in np.nonzero(count)[0]:
        m = idx_all == c
        table[c] = tgt[m].mean(0)
        freq = np.bincount(labels[m], minlength=N_CLASS) + 1e-3
        table[c, :N_CLASS] = np.log(freq / freq.sum())
    return table, count.astype(np.int64)


def train_variant(variant: str, train: Bank, val: Bank | None, cfg: TokenizerConfig, args, run_dir: Path
                  ) -> tuple[AgentTokenizer, dict]:
    """Train one variant; returns the VAL-selected model and a summary."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    tok = AgentTokenizer(cfg)
    set_norm_stats(tok, train)
    tok.train()
    size_pool = train.agent_box[:, 3:5].copy()
    n_bg = args.background_per_frame if variant == "targeted" else args.untargeted_per_frame
    agents_of = train.agents_of()
    opt = torch.optim.Adam([p for p in tok.parameters() if p.requires_grad], lr=args.lr)
    steps_per_epoch = max(1, train.frames // args.batch_frames)
    total = steps_per_epoch * args.epochs
    budget_s = args.time_budget_min * 60.0
    t0 = time.time()
    best = (float("inf"), None, 0)
    step = 0
    log_path = run_dir / f"log_{variant}.csv"
    restarts = 0
    with log_path.open("w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["epoch", "step", "train_loss", "feat", "head", "scene", "commit", "val_loss",
                     "val_agent_perplexity", "val_agent_codes_used", "restarts", "lr", "elapsed_s"])
        for epoch in range(args.epochs):
            order = rng.permutation(train.frames)
            sums: dict[str, float] = {}
            n_done = 0
            bar = tqdm(range(steps_per_epoch), desc=f"{variant} {epoch + 1}/{args.epochs}", unit="step")
            progress = 0.0
            for s in bar:
                progress = max(step / total, (time.time() - t0) / budget_s)
                if progress >= 1.0:
                    break
                lr = args.lr * (progress / WARMUP if progress < WARMUP
                                else 0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * (progress - WARMUP) / (1 - WARMUP))))
                for g in opt.param_groups:
                    g["lr"] = lr
                frames = order[s * args.batch_frames:(s + 1) * args.batch_frames]
                batch = make_batch(train, frames, agents_of, variant, n_bg, size_pool, cfg, rng)
                if not bool(tok.vq.initialized):
                    with torch.no_grad():
                        _, _, ema = batch_loss(tok, train, batch, variant)
                    tok.vq.initialise(ema["z"], ema["s"], gen)
                    tok.scene_vq.initialise(ema["sz"], ema["sw"], gen)
                loss, parts, ema = batch_loss(tok, train, batch, variant)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(tok.parameters(), 5.0)
                opt.step()
                tok.vq.ema_update(ema["z"], ema["idx"], ema["s"])
                tok.scene_vq.ema_update(ema["sz"], ema["sidx"], ema["sw"])
                if step % RESTART_EVERY == 0 and progress < 0.9:
                    restarts += tok.vq.restart_dead(ema["z"], ema["s"], DEAD_FRACTION, gen)
                    restarts += tok.scene_vq.restart_dead(ema["sz"], ema["sw"], DEAD_FRACTION, gen)
                step += 1
                parts["loss"] = float(loss.detach())
                for key, v in parts.items():
                    sums[key] = sums.get(key, 0.0) + v
                n_done += 1
                bar.set_postfix(loss=f"{sums['loss'] / n_done:.3f}", feat=f"{sums['feat'] / n_done:.3f}",
                                head=f"{sums.get('head', 0.0) / n_done:.3f}", restarts=restarts)
            if val is not None and val.frames:
                val_loss, vstats = evaluate(tok, val, variant, n_bg, size_pool, args.seed + 1, args.batch_frames)
            else:
                val_loss, vstats = float("nan"), {}
            elapsed = time.time() - t0
            avg = {key: v / max(1, n_done) for key, v in sums.items()}
            wr.writerow([epoch + 1, step, f"{avg.get('loss', float('nan')):.5f}", f"{avg.get('feat', 0):.5f}",
                         f"{avg.get('head', 0):.5f}", f"{avg.get('scene', 0):.5f}", f"{avg.get('commit', 0):.5f}",
                         f"{val_loss:.5f}", f"{vstats.get('agent_perplexity', 0):.1f}",
                         vstats.get("agent_codes_used", 0), restarts, f"{opt.param_groups[0]['lr']:.6f}",
                         f"{elapsed:.1f}"])
            fh.flush()
            print(f"{variant} epoch {epoch + 1}: train {avg.get('loss', float('nan')):.4f} val {val_loss:.4f} "
                  f"{vstats} restarts {restarts} [{elapsed / 60:.1f} min]")
            if not np.isfinite(val_loss) or val_loss < best[0]:
                best = (val_loss if np.isfinite(val_loss) else float("inf"), copy.deepcopy(tok.state_dict()), epoch + 1)
            if progress >= 1.0:
                print(f"{variant}: time budget {args.time_budget_min} min used up in epoch {epoch + 1}")
                break
    if best[1] is not None:
        tok.load_state_dict(best[1])
    tok.eval()
    summary = {"epochs_done": epoch + 1, "selected_epoch": best[2], "val_loss": best[0], "steps": step,
               "restarts": restarts, "elapsed_s": round(time.time() - t0, 1),
               "background_per_frame": n_bg, "log": str(log_path.relative_to(repo_root()))
               if log_path.is_relative_to(repo_root()) else str(log_path)}
    return tok, summary


def save_variant(tok: AgentTokenizer, variant: str, out_dir: Path, table: np.ndarray, count: np.ndarray,
                 info: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / weights_name(variant)
    with torch.no_grad():
        # a copy, not a view: torch.save would store the whole decoder output behind a view
        decoder_table = tok.decode(tok.vq.embedding)[1].float().clone()
    torch.save({"state_dict": tok.state_dict(), "config": tok.cfg.to_dict(), "variant": variant,
                "code_table": torch.from_numpy(table), "code_agent_count": torch.from_numpy(count),
                "decoder_table": decoder_table, "info": info}, path)
    return path


def pick_paths(split: str, root: Path | None, episode_stride: int, max_episodes: int | None) -> list[Path]:
    paths = shard_paths(split, root)[::max(1, episode_stride)]
    if max_episodes:
        paths = paths[:max_episodes]
    for p in paths:
        seed = int(p.stem.replace("seed", ""))
        if split_of(seed) != split:
            raise ValueError(f"{p}: seed {seed} belongs to split {split_of(seed)}, not {split}")
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=None, help="dataset root (default data/sim)")
    ap.add_argument("--detector-dir", type=Path, default=None, help="frozen detector (default models/detector)")
    ap.add_argument("--variants", default="targeted,untargeted", help="comma-separated: targeted, untargeted")
    ap.add_argument("--episode-stride", type=int, default=1, help="use every n-th TRAIN shard (sorted)")
    ap.add_argument("--max-episodes", type=int, default=None, help="at most this many TRAIN shards")
    ap.add_argument("--val-episodes", type=int, default=18, help="VAL shards for model selection (spread)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-frames", type=int, default=16, help="frames per step (all their agents)")
    ap.add_argument("--background-per-frame", type=int, default=16, help="targeted: uniform boxes per frame")
    ap.add_argument("--untargeted-per-frame", type=int, default=40, help="untargeted: uniform boxes per frame")
    ap.add_argument("--codebook-size", type=int, default=TokenizerConfig.codebook_size)
    ap.add_argument("--code-dim", type=int, default=TokenizerConfig.code_dim)
    ap.add_argument("--hidden", type=int, default=TokenizerConfig.hidden)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-budget-min", type=float, default=15.0, help="training budget per variant (min)")
    ap.add_argument("--run-name", default="shipped")
    ap.add_argument("--ship", action="store_true", help="copy the weights + tokenizer.json to models/tokenizer/")
    ap.add_argument("--no-cache", action="store_true", help="re-extract the records even if cached")
    ap.add_argument("--synthetic-episodes", type=int, default=0,
                    help="smoke runs only: N tps_sim synthetic scenes (no SUMO) instead of shards")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        print(f"unknown variant(s) {bad}; expected {VARIANTS}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    t_start = time.time()
    command = "python -m training.tokenizer " + " ".join(argv if argv is not None else sys.argv[1:])

    det_dir = Path(args.detector_dir or default_model_dir())
    det_meta = load_meta(det_dir)
    det_file = det_dir / "detector.pt"
    det_file_sha = file_sha256(det_file)
    net, _ = load_torch_model(det_file)
    det_state_sha = state_sha256(net)
    cfg = TokenizerConfig(codebook_size=args.codebook_size, code_dim=args.code_dim, hidden=args.hidden,
                          feature_channels=int(det_meta["net"]["head"]), range_m=float(det_meta["grid"]["range_m"]))
    run_dir = repo_root() / "runs" / "tokenizer" / args.run_name
    run_dir.mkdir(parents=True, exist_ok=True)

    if args.synthetic_episodes:
        clutters = ("none", "low", "medium", "high")
        train_eps = [synthetic_frames(k, 4, clutters[k % 4], n_vehicles=20) for k in range(args.synthetic_episodes)]
        val_eps = [synthetic_frames(1000, 3, "medium", n_vehicles=20)]
        train = extract(train_eps, net, det_meta, cfg, args.threads, "records train (synthetic)")
        val = extract(val_eps, net, det_meta, cfg, args.threads, "records val (synthetic)")
        data_desc = f"synthetic scenes 0..{args.synthetic_episodes - 1} (smoke)"
    else:
        train_paths = pick_paths("train", args.data_root, args.episode_stride, args.max_episodes)
        val_all = pick_paths("val", args.data_root, 1, None)
        if not train_paths:
            print(f"no TRAIN shards under {args.data_root or 'data/sim'}/train; run `make dataset` first", file=sys.stderr)
            return 2
        pick = np.linspace(0, len(val_all) - 1, min(args.val_episodes, len(val_all))).round().astype(int)
        val_paths = [val_all[i] for i in sorted(set(pick.tolist()))]
        banks = {}
        for split, paths in (("train", train_paths), ("val", val_paths)):
            key = hashlib.sha256(("\n".join(str(p) for p in paths) + det_file_sha + str(EXTRACT_VERSION)).encode())
            cache = repo_root() / "runs" / "tokenizer" / "cache" / f"{split}-{key.hexdigest()[:16]}.npz"
            if cache.exists() and not args.no_cache:
                print(f"records {split}: cached {cache}")
                banks[split] = load_bank(cache)
            else:
                banks[split] = extract(paths, net, det_meta, cfg, args.threads, f"records {split}")
                save_bank(banks[split], cache)
        train, val = banks["train"], banks["val"]
        data_desc = (f"TRAIN shards {len(train_paths)} (every {args.episode_stride}. of data/sim/train), seeds "
                     f"{min(train.seeds)}..{max(train.seeds)}; VAL {len(val_paths)} shards, seeds "
                     f"{min(val.seeds)}..{max(val.seeds)} (selection)")
    print(f"train: {train.frames} frames, {len(train.agent_frame)} agent samples; val: {val.frames} frames, "
          f"{len(val.agent_frame)} agent samples [{(time.time() - t_start) / 60:.1f} min]")

    infos = {}
    for variant in variants:
        tok, summary = train_variant(variant, train, val, cfg, args, run_dir)
        table, count = fit_code_table(tok, train, variant, args.batch_frames)
        summary["train_agent_codes"] = int((count > 0).sum())
        info = {"variant": variant, "command": command, "seed": args.seed, "data": data_desc,
                "train_frames": train.frames, "train_agent_samples": int(len(train.agent_frame)),
                "train_seeds": sorted(set(train.seeds)), "val_seeds": sorted(set(val.seeds)),
                "detector_sha256": det_file_sha, **summary}
        save_variant(tok, variant, run_dir / "final", table, count, info)
        infos[variant] = {k: v for k, v in info.items() if k != "train_seeds"}
    # the frozen detector: nothing may have changed it
    after = state_sha256(net)
    if after != det_state_sha or file_sha256(det_file) != det_file_sha:
        raise RuntimeError("the frozen detector changed during tokenizer training")
    if any(p.grad is not None for p in net.parameters()):
        raise RuntimeError("a gradient reached the frozen detector")
    meta = {"config": cfg.to_dict(), "head_targets": list(HEAD_TARGETS), "detector_sha256": det_file_sha,
            "detector_state_sha256": det_state_sha, "variants": infos,
            "target_mean": train.agent_target.mean(0).tolist(),
            "total_s": round(time.time() - t_start, 1)}
    (run_dir / "final" / "tokenizer.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"done in {(time.time() - t_start) / 60:.1f} min; detector unchanged (state sha256 {det_state_sha[:12]}); "
          f"artifacts in {run_dir / 'final'}")
    if args.ship:
        dst = default_tokenizer_dir()
        dst.mkdir(parents=True, exist_ok=True)
        for name in [weights_name(v) for v in variants] + ["tokenizer.json"]:
            shutil.copy2(run_dir / "final" / name, dst / name)
        print(f"shipped to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
