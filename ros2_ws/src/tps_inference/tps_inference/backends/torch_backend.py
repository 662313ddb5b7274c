"""torch backend: an ``nn.Module``, a TorchScript file or a ``torch.export`` ExportedProgram (.pt2).

CPU for development and tests; CUDA is the GPU path where TensorRT is absent (``precision: fp16``
runs under autocast). Device time comes from CUDA events around the forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..engine_params import EngineParams
from ..errors import BackendUnavailableError
from ..specs import TensorSpec
from .base import Backend, BackendRun

TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".jit", ".torchscript")
EXPORTED_PROGRAM_SUFFIXES = (".pt2",)


def import_torch():
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(f"torch is not importable: {exc}") from exc
    return torch


def _numpy_dtype(torch_dtype) -> np.dtype:
    torch = import_torch()
    if torch_dtype == torch.bfloat16:  # numpy has no bfloat16; inputs arrive as float32
        return np.dtype(np.float32)
    return np.dtype(torch.empty((), dtype=torch_dtype).numpy().dtype)


def exported_program_specs(ep, output_names: Sequence[str] | None) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
    """Input specs (from the placeholders' fake tensors; symbolic dims become named dims) and
    output names of an ExportedProgram."""
    user_inputs = list(ep.graph_signature.user_inputs)
    specs = []
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            val = node.meta.get("val")
            if val is None or not hasattr(val, "shape"):
                raise BackendUnavailableError(f"ExportedProgram input '{node.name}' is not a tensor")
            shape = tuple(int(d) if isinstance(d, int) else str(d) for d in val.shape)
            specs.append(TensorSpec(node.name, _numpy_dtype(val.dtype), shape))
    n_out = len(ep.graph_signature.user_outputs)
    names = tuple(output_names) if output_names else tuple(f"output_{i}" for i in range(n_out))
    return tuple(specs), names


class TorchBackend(Backend):
    """Runs a torch model on numpy inputs (zero-copy ``torch.from_numpy`` on CPU)."""

    name = "torch"

    def __init__(self, model, params: EngineParams, device: str, *,
                 input_specs: Sequence[TensorSpec] | None = None, output_names: Sequence[str] | None = None):
        torch = import_torch()
        self._torch = torch
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(f"device 'cuda' requested but torch {torch.__version__} sees no CUDA device")
        self.device = device
        self._device = torch.device(device)
        if params.intra_op_threads:
            torch.set_num_threads(params.intra_op_threads)
        kind = "module"
        if isinstance(model, (str, Path)):
            path = Path(model)
            if path.suffix in EXPORTED_PROGRAM_SUFFIXES:
                try:
                    ep = torch.export.load(str(path))
                except Exception as exc:  # torch raises several types for a bad archive
                    raise BackendUnavailableError(f"{path} is not a torch.export ExportedProgram: {exc}") from exc
                specs, names = exported_program_specs(ep, output_names)
                input_specs = input_specs or specs
                output_names = names
                model = ep.module()
                kind = "ExportedProgram"
            else:
                try:
                    model = torch.jit.load(str(path), map_location=self._device)
                except Exception as exc:
                    raise BackendUnavailableError(
                        f"{path} is not a TorchScript file ({type(exc).__name__}); a torch checkpoint (state_dict) "
                        "must be loaded by its own package and passed to Engine as an nn.Module"
                    ) from exc
                kind = "TorchScript"
        if not input_specs:
            raise BackendUnavailableError(
                f"a torch {kind} does not describe its inputs; pass input_specs=[TensorSpec(name, dtype, shape), ...]"
            )
        self.module = model.to(self._device)
        if hasattr(self.module, "eval"):
            try:
                self.module.eval()
            except NotImplementedError:  # ExportedProgram modules refuse eval(); they are already in eval mode
                pass
        self.input_specs = tuple(input_specs)
        self._output_names = tuple(output_names) if output_names else None
        self.output_specs = ()  # filled from the first call's outputs (torch modules do not declare them)
        self._autocast = params.precision == "fp16" and device == "cuda"
        self.detail = f"{kind} on {device}" + (" (fp16 autocast)" if self._autocast else "")

    def _name_outputs(self, out) -> dict[str, np.ndarray]:
        torch = self._torch
        if isinstance(out, dict):
            items = list(out.items())
        else:
            tensors = (out,) if isinstance(out, torch.Tensor) else tuple(out)
            names = self._output_names or tuple(f"output_{i}" for i in range(len(tensors)))
            if len(names) != len(tensors):
                raise BackendUnavailableError(
                    f"the torch model returned {len(tensors)} output(s) but {len(names)} output name(s) were given"
                )
            items = list(zip(names, tensors, strict=True))
        result = {}
        for name, value in items:
            value = value.detach()
            if value.dtype in (torch.float16, torch.bfloat16):
                value = value.float()
            result[str(name)] = value.cpu().numpy()
        return result

    def run(self, inputs: dict[str, np.ndarray]) -> BackendRun:
        torch = self._torch
        cuda = self._device.type == "cuda"
        with torch.inference_mode():
            tensors = [torch.from_numpy(np.ascontiguousarray(inputs[s.name])).to(self._device, non_blocking=cuda)
                       for s in self.input_specs]
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            with torch.autocast("cuda", dtype=torch.float16, enabled=self._autocast):
                out = self.module(*tensors)
            device_ms = None
            if cuda:
                end.record()
                end.synchronize()
                device_ms = float(start.elapsed_time(end))
            outputs = self._name_outputs(out)
        if not self.output_specs:
            self.output_specs = tuple(TensorSpec(n, a.dtype, a.shape) for n, a in outputs.items())
        return BackendRun(outputs, device_ms)
