"""The planner's export (``export/planner.py``) and its runtime backends: a small checkpoint in the
training's format (every trainable tensor, LoRA adapters included, moved off its initial value so
the merge matters) is exported by the CLI into a tmp folder, then ONNX Runtime FP32 must equal
torch, INT8 (per-channel) stay close, the agent axis be dynamic, and a corrupt or missing file be
refused with a ValueError naming it. TensorRT runs only where TensorRT and a GPU are present."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from tps_planner.vlm.inputs import frame_inputs, stack_frames
from tps_planner.vlm.layout import PlannerConfig
from tps_planner.vlm.model import InstructionTokenizer, VLMPlanner
from tps_planner.vlm.runtime import EXPORT_MANIFEST, OUTPUT_KEYS, PlannerRuntime
from vlm_helpers import write_fake_shard

from export import planner as xp
from training.planner import trainable_state

MAX_AGENTS = 8


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint, export folder, data root, {backend: runtime}) for one small trained-like planner."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("planner_export")
    cfg = PlannerConfig(max_agents=MAX_AGENTS, plan_prior="route")
    model = VLMPlanner(cfg, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:   # as after training: adapters (B starts at 0), encoders, heads
                p.add_(torch.randn(p.shape, generator=g) * (0.02 if "lora_" in name else 0.01))
    ckpt = root / "planner.pt"
    torch.save({"config": cfg.to_dict(), "state_dict": trainable_state(model), "summary": {"steps": 0}}, ckpt)
    data = root / "data"
    write_fake_shard(data, "val", "highway", 1000, n=3, n_tokens=6)
    write_fake_shard(data, "val", "signalised", 1001, n=3, n_tokens=MAX_AGENTS + 4)
    out = root / "export"
    rc = xp.main(["--checkpoint", str(ckpt), "--out", str(out), "--data", str(data), "--threads", "2"])
    assert rc == 0
    rts = {"torch": PlannerRuntime(ckpt, "torch", 2), "onnxruntime": PlannerRuntime(out, "onnxruntime", 2),
           "onnxruntime-int8": PlannerRuntime(out / EXPORT_MANIFEST, "onnxruntime-int8", 2)}
    return ckpt, out, data, rts


def _frame(cfg, n_agents: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    geom = rng.normal(0, 12, (n_agents, 7))
    geom[:, 3:5] = np.abs(geom[:, 3:5]) + 1.0
    return frame_inputs(cfg, speed_mps=9.0, accel_mps2=0.3, yaw_rate_rps=0.01,
                        route_xy=np.array([[0.0, 0.0], [100.0, 5.0], [200.0, 30.0]]), pose=np.array([3.0, 0.2, 0.05]),
                        stop_line_m=30.0, target_speed_mps=12.0, tok_code=rng.integers(0, cfg.codebook_size, n_agents),
                        tok_geom=geom, tok_qerr=np.abs(rng.normal(0, 1, n_agents)),
                        image=rng.integers(0, 255, (cfg.camera_size[1], cfg.camera_size[0], 3), dtype=np.uint8))


def test_manifest_files_and_a_plain_bert_graph(exported):
    import onnx

    _, out, _, _ = exported
    man = json.loads((out / EXPORT_MANIFEST).read_text())
    assert set(man["files"]) == {"fp32", "int8", "int8_per_tensor"}
    from tps_inference.manifest import sha256_file

    for entry in [*man["files"].values(), man["embeddings"]]:
        assert sha256_file(out / entry["file"]) == entry["sha256"] and entry["made_by"].startswith("python -m export")
    assert man["embeddings"]["shape"][1] == 384 and man["embeddings"]["dtype"] == "float16"
    rows = man["parity"]["rows"]
    assert rows["onnxruntime"]["frames"] == 6 and "l2_mean" in rows["onnxruntime-int8"]
    assert (out / "parity.md").read_text().count("| onnxruntime") == 3
    graph = onnx.load(str(out / "planner.onnx"))
    names = [n.name for n in graph.graph.node] + [i.name for i in graph.graph.initializer]
    assert not [n for n in names if "lora" in n.lower()]                 # adapters merged away
    vocab = man["embeddings"]["shape"][0]
    assert not [i for i in graph.graph.initializer if i.dims and i.dims[0] == vocab]   # lookup outside
    assert not [n for n in graph.graph.node if n.op_type == "Identity"
                and n.input[0] in {i.name for i in graph.graph.initializer}]
    q = onnx.load(str(out / "planner_int8.onnx"))
    n_int = sum(n.op_type == "MatMulInteger" for n in q.graph.node)
    assert n_int >= 3 * 6 * 6                                            # every pass's trunk weights INT8


def test_tokenization_is_the_models(exported):
    _, _, _, rts = exported
    texts = ["change lane left", "take the second exit at the roundabout and then keep going for a while"]
    ids, mask = rts["onnxruntime"].tokenize(texts)
    ref_ids, ref_mask = InstructionTokenizer(rts["torch"].cfg.max_text_tokens)(texts)
    assert np.array_equal(ids, ref_ids.numpy()) and np.array_equal(mask, ref_mask.numpy())


def test_ort_fp32_equals_torch_and_int8_stays_close_on_shard_frames(exported):
    _, _, data, rts = exported
    cfg = rts["torch"].cfg
    frames, texts = [], []
    for p in sorted((data / "val").rglob("*.npz")):
        f, t, _, _ = xp.shard_frames(p, cfg)
        frames += f
        texts += t
    outs = {k: [rt.run(stack_frames([f]), [t]) for f, t in zip(frames, texts, strict=True)] for k, rt in rts.items()}
    for ref, fp32 in zip(outs["torch"], outs["onnxruntime"], strict=True):
        assert set(fp32) == set(OUTPUT_KEYS)
        for k in OUTPUT_KEYS:
            assert fp32[k].shape == ref[k].shape, k
            np.testing.assert_allclose(fp32[k], ref[k], atol=2e-3 if k in ("trajectory", "modes") else 5e-4,
                                       err_msg=k)
    d8 = xp.compare_outputs(outs["torch"], outs["onnxruntime-int8"])
    d32 = xp.compare_outputs(outs["torch"], outs["onnxruntime"])
    assert d8["traj_l2_mean"] < 0.3 and d8["light_max_abs"] < 0.1, d8
    assert d8["traj_l2_mean"] > 10 * d32["traj_l2_mean"]                   # it is quantised, not the FP32 graph


@pytest.mark.parametrize("n_agents", [(1, 1), (MAX_AGENTS, 3), (0, MAX_AGENTS)])
def test_agent_axis_is_dynamic(exported, n_agents):
    _, _, _, rts = exported
    cfg = rts["torch"].cfg
    batch = stack_frames([_frame(cfg, n, 10 + i) for i, n in enumerate(n_agents)])
    texts = ["change lane left", "stop"]
    ref = rts["torch"].run(batch, texts)
    for name in ("onnxruntime", "onnxruntime-int8"):
        out = rts[name].run(batch, texts)
        a = max(1, max(n_agents))
        assert out["relevance"].shape == (2, a) and out["modes"].shape == (2, a, cfg.n_modes, cfg.forecast_steps, 2)
        tol = 2e-3 if name == "onnxruntime" else 0.5
        np.testing.assert_allclose(out["trajectory"], ref["trajectory"], atol=tol, err_msg=name)
        np.testing.assert_allclose(out["lead"], ref["lead"], atol=tol, err_msg=name)


def test_more_agents_than_the_graph_takes_is_refused(exported):
    _, _, _, rts = exported
    cfg = rts["onnxruntime"].cfg
    big = PlannerConfig(**{**cfg.to_dict(), "max_agents": MAX_AGENTS + 2, "camera_size": tuple(cfg.camera_size),
                           "camera_grid": tuple(cfg.camera_grid), "lora_targets": tuple(cfg.lora_targets)})
    batch = stack_frames([_frame(big, MAX_AGENTS + 2, 3)])
    with pytest.raises(ValueError, match="max_agents"):
        rts["onnxruntime"].run(batch, ["stop"])
    with pytest.raises(ValueError, match="instruction texts"):
        rts["onnxruntime"].run(batch, ["stop", "go"])


def test_corrupt_or_missing_files_are_refused_by_name(exported, tmp_path):
    ckpt, out, _, _ = exported
    bad = tmp_path / "export"
    shutil.copytree(out, bad)
    onnx_path = bad / "planner.onnx"
    data = bytearray(onnx_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="planner.onnx"):
        PlannerRuntime(bad, "onnxruntime")
    # a truncated graph whose manifest entry was rewritten to match: ONNX Runtime refuses it, named
    man = json.loads((bad / EXPORT_MANIFEST).read_text())
    q = bad / "planner_int8.onnx"
    q.write_bytes(q.read_bytes()[:4096])
    from tps_inference.manifest import sha256_file

    man["files"]["int8"]["sha256"] = sha256_file(q)
    (bad / EXPORT_MANIFEST).write_text(json.dumps(man))
    with pytest.raises(ValueError, match="planner_int8.onnx"):
        PlannerRuntime(bad, "onnxruntime-int8")
    (bad / "word_embeddings.npy").unlink()
    with pytest.raises(ValueError, match="word_embeddings.npy"):
        PlannerRuntime(bad, "onnxruntime-int8", graph="int8_per_tensor")
    (bad / EXPORT_MANIFEST).write_text("{not json")
    with pytest.raises(ValueError, match=EXPORT_MANIFEST):
        PlannerRuntime(bad, "onnxruntime")
    with pytest.raises(ValueError, match="not found"):
        PlannerRuntime(tmp_path / "nowhere", "onnxruntime")
    with pytest.raises(ValueError, match="unknown planner backend"):
        PlannerRuntime(out, "onnx")


def test_a_checkpoint_path_needs_its_own_export(exported, tmp_path, monkeypatch):
    ckpt, out, _, rts = exported
    import tps_planner.vlm.runtime as runtime

    monkeypatch.setattr(runtime, "default_export_dir", lambda stem: out if stem == "planner" else out / stem)
    rt = PlannerRuntime(ckpt, "onnxruntime")                              # planner.pt -> its export
    assert rt.manifest["source"]["sha256"] == rts["onnxruntime"].manifest["source"]["sha256"]
    other = tmp_path / "planner.pt"
    other.write_bytes(ckpt.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="another checkpoint"):
        PlannerRuntime(other, "onnxruntime")
    with pytest.raises(ValueError, match="make export-planner"):                 # no export of this one
        PlannerRuntime(tmp_path / "planner_scratch.pt", "onnxruntime")


def test_tensorrt_fp16_matches_torch(exported, tmp_path):
    from tps_inference.device import cuda_status, tensorrt_status

    if not (tensorrt_status()[0] and cuda_status()[0]):
        pytest.skip(f"TensorRT engine needs TensorRT and an NVIDIA GPU: {tensorrt_status()[1]} {cuda_status()[1]}")
    _, out, _, rts = exported
    rt = PlannerRuntime(out, "tensorrt", precision="fp16", engine_cache=tmp_path / "engines")
    batch = stack_frames([_frame(rt.cfg, 5, 1)])
    ref = rts["torch"].run(batch, ["keep lane"])
    got = rt.run(batch, ["keep lane"])
    np.testing.assert_allclose(got["trajectory"], ref["trajectory"], atol=0.1)
