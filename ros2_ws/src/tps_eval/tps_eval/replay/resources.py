"""CPU and memory of a running node graph, sampled from outside (no ROS): per node the CPU share
(100 % = one core) and the resident set size, the node's own process plus its descendants.

    sampler = ResourceSampler(gp.pids, period_s=0.5)   # label -> pid, asked again at every sample
    sampler.start(); ...; sampler.stop(); sampler.summary()

A node that restarts gets a new pid: it is sampled under the same label from then on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import psutil


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class ResourceSampler:
    """Samples every ``period_s`` in a daemon thread (module docstring).

    Args:
        pids: returns label -> pid of the processes to sample (called at each sample).
        period_s: the sampling period (CPU shares are averages over it).
    """

    def __init__(self, pids: Callable[[], dict[str, int]], period_s: float = 0.5) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self._pids = pids
        self.period_s = period_s
        self._procs: dict[tuple[str, int], psutil.Process] = {}
        self.samples: dict[str, list[tuple[float, float, float]]] = {}   # label -> [(t, cpu %, rss MB)]
        self.total_rss_mb: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self, t: float) -> None:
        total = 0.0
        for label, pid in self._pids().items():
            cpu = rss = 0.0
            for proc in _tree(pid):
                key = (label, proc.pid)
                known = self._procs.setdefault(key, proc)
                try:
                    cpu += known.cpu_percent(None)    # since this process's previous sample (0 at first)
                    rss += known.memory_info().rss / 2**20
                except psutil.Error:
                    continue
            self.samples.setdefault(label, []).append((t, cpu, rss))
            total += rss
        self.total_rss_mb.append(total)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(self.period_s):
            self._sample(time.monotonic() - t0)

    def start(self) -> ResourceSampler:
        self._sample(0.0)   # primes cpu_percent
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def summary(self) -> dict:
        """{"nodes": {label: {cpu_pct_mean, cpu_pct_p95, rss_mb_peak, samples}}, "total": {...}};
        the first sample of each process (no CPU share yet) is left out of the CPU figures."""
        nodes, cpu_sum = {}, None
        for label, rows in sorted(self.samples.items()):
            arr = np.asarray(rows, float)
            cpu = arr[1:, 1] if len(arr) > 1 else np.zeros(0)
            nodes[label] = {"cpu_pct_mean": round(float(cpu.mean()), 1) if cpu.size else None,
                            "cpu_pct_p95": round(float(np.percentile(cpu, 95)), 1) if cpu.size else None,
                            "rss_mb_peak": round(float(arr[:, 2].max()), 1), "samples": len(arr)}
            if cpu.size:
                cpu_sum = cpu if cpu_sum is None else cpu_sum[: len(cpu)] + cpu[: len(cpu_sum)]
        total = {"rss_mb_peak": round(max(self.total_rss_mb), 1) if self.total_rss_mb else None,
                 "cpu_pct_mean": round(float(cpu_sum.mean()), 1) if cpu_sum is not None else None,
                 "period_s": self.period_s, "host_cpus": psutil.cpu_count()}
        return {"nodes": nodes, "total": total}
