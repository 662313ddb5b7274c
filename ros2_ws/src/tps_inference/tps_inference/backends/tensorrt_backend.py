"""Native TensorRT 10 backend: tensors by name, ``set_tensor_address``, ``execute_async_v3``.

Device buffers come from torch CUDA tensors when torch has CUDA, else from cuda-python
(``cudaMalloc``/``cudaMemcpyAsync``). TensorRT, torch and cuda-python are imported only when an
engine is loaded, so the package imports without them.

Not exercised on the development machines (no TensorRT, no GPU): the tests skip with that reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..engine_params import EngineParams
from ..errors import BackendUnavailableError, EngineCacheError, InputShapeError
from ..specs import TensorSpec, normalise_dim
from .base import Backend, BackendRun

LOG = logging.getLogger("tps_inference.engine")


def import_tensorrt():
    try:
        import tensorrt as trt
    except Exception as exc:
        raise BackendUnavailableError(f"TensorRT is not importable here ({type(exc).__name__}: {exc})") from exc
    return trt


def import_cudart():
    """cuda-python's runtime module (``cuda.bindings.runtime`` from 12.6, ``cuda.cudart`` before)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart
    return cudart


class _TorchBuffers:
    """Device memory, stream and timing events from torch.cuda."""

    def __init__(self):
        import torch

        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.handle = self.stream.cuda_stream
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self._tensors: dict[str, object] = {}

    def upload(self, name: str, arr: np.ndarray) -> int:
        with self.torch.cuda.stream(self.stream):
            t = self.torch.from_numpy(arr).to("cuda", non_blocking=True)
        self._tensors[name] = t
        return int(t.data_ptr())

    def alloc(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        torch_dtype = self.torch.from_numpy(np.empty(0, dtype)).dtype
        with self.torch.cuda.stream(self.stream):
            t = self.torch.empty(shape, dtype=torch_dtype, device="cuda")
        self._tensors[name] = t
        return int(t.data_ptr())

    def start(self) -> None:
        self._start.record(self.stream)

    def finish(self, names: list[str]) -> tuple[dict[str, np.ndarray], float]:
        self._end.record(self.stream)
        with self.torch.cuda.stream(self.stream):
            host = {n: self._tensors[n].to("cpu", non_blocking=False) for n in names}
        self.stream.synchronize()
        device_ms = float(self._start.elapsed_time(self._end))
        self._tensors.clear()
        return {n: t.numpy() for n, t in host.items()}, device_ms


class _CudaPythonBuffers:
    """The same with cuda-python's runtime bindings (no torch CUDA needed)."""

    def __init__(self):
        cudart = import_cudart()
        self.rt = cudart
        self._stream = self._ok(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.handle = int(self._stream)  # TensorRT takes the raw cudaStream_t as an int
        self._start = self._ok(cudart.cudaEventCreate(), "cudaEventCreate")
        self._end = self._ok(cudart.cudaEventCreate(), "cudaEventCreate")
        self._mem: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes); reused between calls
        self._shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._keep: list[np.ndarray] = []

    def _ok(self, result, what: str):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise BackendUnavailableError(f"{what} failed: {err}")
        return rest[0] if len(rest) == 1 else tuple(rest)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._mem.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._ok(self.rt.cudaFree(ptr), "cudaFree")
            ptr = int(self._ok(self.rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
            self._mem[name] = (ptr, nbytes)
        return ptr

    def upload(self, name: str, arr: np.ndarray) -> int:
        ptr = self._buffer(name, arr.nbytes)
        self._keep.append(arr)  # the host array must outlive the async copy
        self._ok(self.rt.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream),
                 "cudaMemcpyAsync H2D")
        return ptr

    def alloc(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        self._shapes[name] = (shape, np.dtype(dtype))
        return self._buffer(name, int(np.prod(shape)) * np.dtype(dtype).itemsize)

    def start(self) -> None:
        self._ok(self.rt.cudaEventRecord(self._start, self._stream), "cudaEventRecord")

    def finish(self, names: list[str]) -> tuple[dict[str, np.ndarray], float]:
        self._ok(self.rt.cudaEventRecord(self._end, self._stream), "cudaEventRecord")
        out = {}
        for n in names:
            shape, dtype = self._shapes[n]
            host = np.empty(shape, dtype)
            self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, self._mem[n][0], host.nbytes,
                                             self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream),
                     "cudaMemcpyAsync D2H")
            out[n] = host
        self._ok(self.rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        device_ms = float(self._ok(self.rt.cudaEventElapsedTime(self._start, self._end), "cudaEventElapsedTime"))
        self._keep.clear()
        return out, device_ms


def _device_buffers():
    reasons = []
    try:
        import torch

        if torch.cuda.is_available():
            return _TorchBuffers()
        reasons.append("torch sees no CUDA device")
    except ImportError as exc:
        reasons.append(f"torch not importable ({exc})")
    try:
        return _CudaPythonBuffers()
    except Exception as exc:
        reasons.append(f"cuda-python not usable ({exc})")
    raise BackendUnavailableError("TensorRT needs CUDA device buffers: " + "; ".join(reasons))


class TensorRTBackend(Backend):
    """A deserialised TensorRT engine and one execution context."""

    name = "tensorrt"
    device = "cuda"

    def __init__(self, engine_path: Path, params: EngineParams, allow_nonfinite: frozenset[str] = frozenset()):
        trt = import_tensorrt()
        self._buffers = _device_buffers()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise EngineCacheError(
                f"TensorRT {trt.__version__} could not deserialise {engine_path} (built by another version or corrupted);"
                " delete it to rebuild"
            )
        self.context = self.engine.create_execution_context()
        inputs, outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            spec = TensorSpec(name, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))),
                              tuple(normalise_dim(d) for d in self.engine.get_tensor_shape(name)),
                              allow_nonfinite=name in allow_nonfinite)
            (inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        self.input_specs, self.output_specs = tuple(inputs), tuple(outputs)
        self.detail = f"TensorRT {trt.__version__}, engine {Path(engine_path).name}, {type(self._buffers).__name__[1:]}"

    def run(self, inputs: dict[str, np.ndarray]) -> BackendRun:
        for spec in self.input_specs:
            arr = np.ascontiguousarray(inputs[spec.name])
            if not self.context.set_input_shape(spec.name, arr.shape):
                raise InputShapeError(
                    f"input '{spec.name}' shape {arr.shape} is outside the TensorRT engine's optimisation profile"
                )
            self.context.set_tensor_address(spec.name, self._buffers.upload(spec.name, arr))
        names = []
        for spec in self.output_specs:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(spec.name))
            self.context.set_tensor_address(spec.name, self._buffers.alloc(spec.name, shape, spec.dtype))
            names.append(spec.name)
        self._buffers.start()
        if not self.context.execute_async_v3(self._buffers.handle):
            raise BackendUnavailableError("TensorRT execute_async_v3 returned false (see the TensorRT log)")
        outputs, device_ms = self._buffers.finish(names)
        return BackendRun(outputs, device_ms)
