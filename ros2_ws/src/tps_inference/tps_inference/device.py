"""What accelerators and runtimes this machine has, with a reason for each answer.

Every probe imports its library lazily and never raises: it returns (available, reason) so that
``backend: auto`` can log *why* it chose what it chose.
"""

from __future__ import annotations

import functools


@functools.cache
def tensorrt_status() -> tuple[bool, str]:
    """(importable, "tensorrt 10.x" or why not)."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or a broken install raising OSError/RuntimeError
        return False, f"tensorrt not importable ({type(exc).__name__}: {exc})"
    version = getattr(trt, "__version__", "?")
    if not str(version).split(".")[0].isdigit() or int(str(version).split(".")[0]) < 10:
        return False, f"tensorrt {version} found but the runtime needs TensorRT >= 10"
    return True, f"tensorrt {version}"


@functools.cache
def cuda_status() -> tuple[bool, str]:
    """(a CUDA device is usable, its name or why not) -- via torch, else cuda-python."""
    reasons = []
    try:
        import torch

        if torch.cuda.is_available():
            return True, f"CUDA device '{torch.cuda.get_device_name(0)}' (torch {torch.__version__})"
        reasons.append(f"torch {torch.__version__}: torch.cuda.is_available() is False")
    except Exception as exc:
        reasons.append(f"torch not importable ({exc})")
    try:
        from .backends.tensorrt_backend import import_cudart

        cudart = import_cudart()
        err, count = cudart.cudaGetDeviceCount()
        if int(err) == 0 and count > 0:
            err, props = cudart.cudaGetDeviceProperties(0)
            name = props.name.decode(errors="replace").rstrip("\x00") if int(err) == 0 else "?"
            return True, f"CUDA device '{name}' (cuda-python)"
        reasons.append(f"cuda-python: cudaGetDeviceCount -> {err}, {count} device(s)")
    except Exception as exc:
        reasons.append(f"cuda-python not usable ({type(exc).__name__})")
    return False, "no CUDA device: " + "; ".join(reasons)


def gpu_name() -> str:
    """Name of CUDA device 0 ("" when there is none); part of the TensorRT engine-cache key."""
    ok, reason = cuda_status()
    if not ok:
        return ""
    return reason.split("'")[1] if "'" in reason else reason
