"""Running a trained planner on numpy batches, one interface for every backend: the planner node,
the open-loop evaluation and the benchmark call :class:`PlannerRuntime`.

``backend="torch"``: the checkpoint (``planner.pt``) in torch eager mode. The exported backends
(ONNX Runtime FP32 / INT8, TensorRT) are added by ``export/planner.py`` and read the files its
manifest names.

Output of :meth:`PlannerRuntime.run` (numpy, leading axis B; A = agent slots of the batch):
``relevance`` (A), ``intent`` (A, len(INTENTS)), ``lead`` (A), ``no_lead`` (), ``scene``
(len(SCENES)), ``light`` (len(LIGHTS)) -- the stage-1 probabilities stages 2 and 3 read;
``modes`` (A, K, T, 2), ``mode_probs`` (A, K) -- the stage-2 forecasts stage 3 read;
``trajectory`` (8, 2), ``log_sigma`` (8) -- the ego plan, base_link [m].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BACKENDS = ("torch",)
P1_KEYS = ("relevance", "intent", "lead", "no_lead", "scene", "light")
P2_KEYS = ("modes", "mode_probs")
S3_KEYS = ("trajectory", "log_sigma")


def outputs_to_numpy(out: dict) -> dict:
    """The model's forward output -> the runtime's flat numpy dict (module docstring)."""
    res = {k: out["p1"][k].detach().float().cpu().numpy() for k in P1_KEYS}
    res.update({k: out["p2"][k].detach().float().cpu().numpy() for k in P2_KEYS})
    res.update({k: out["s3"][k].detach().float().cpu().numpy() for k in S3_KEYS})
    return res


class PlannerRuntime:
    """A loaded planner. ``run(batch, texts)``: a numpy batch of
    :func:`tps_planner.vlm.inputs.stack_frames` and one instruction text per frame -> outputs.

    Raises (constructor):
        ValueError: unknown backend or an unreadable / foreign model file (named).
    """

    def __init__(self, path: str | Path, backend: str = "torch", threads: int = 1) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown planner backend {backend!r}; one of {BACKENDS}")
        import torch

        from tps_planner.vlm.model import InstructionTokenizer, load_planner

        torch.set_num_threads(int(threads))
        self.backend = backend
        self.path = Path(path)
        self.model, ckpt = load_planner(self.path)
        self.cfg = self.model.cfg
        self.summary = ckpt.get("summary", {})
        self.tokenizer = InstructionTokenizer(self.cfg.max_text_tokens)

    def run(self, batch: dict, texts: list[str]) -> dict:
        import torch

        from tps_planner.vlm.model import to_torch_batch

        keep = max(1, int(np.asarray(batch["agent_mask"]).sum(1).max()))
        trimmed = {k: (v[:, :keep] if k in ("agent_codes", "agent_feats", "agent_mask") else v)
                   for k, v in batch.items()}
        with torch.inference_mode():
            out = self.model(to_torch_batch(trimmed, texts, self.tokenizer))
        return outputs_to_numpy(out)
