"""Where episodes run: a local process pool (default) or Ray (a local Ray, or a cluster).

Both give each of their N workers a fixed **slot**; a worker's episodes run on
``ROS_DOMAIN_ID = domain_base + slot``, so concurrent episodes never share a DDS domain and an
episode never depends on which worker ran it (episodes are deterministic given their seed).
Results come back in completion order; :func:`tps_eval.runner.finalize` sorts them.

Ray notes (``/work/shared/ENVIRONMENT.md``): workers are reused and keep ``os.environ`` between
tasks, so the domain is passed explicitly to a fresh ``rclpy.Context`` per episode (never via
the global context); each worker is an actor holding its slot; a driver that inherited the ROS
wheels' bootstrap flag without its ``LD_LIBRARY_PATH`` makes the workers re-bootstrap through
``runtime_env``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from tps_eval.suite import EpisodeSpec

EXECUTORS = ("local", "ray")
# Domains 60..69 are this project's evaluation range on shared machines (overridable).
DEFAULT_DOMAIN_BASE = 60
MAX_DOMAIN_ID = 101          # ROS 2's portable domain-id range is 0..101
RAY_INIT_TIMEOUT_S = 60.0


def default_domain_base() -> int:
    """``TPS_EVAL_DOMAIN_BASE``, else ``DEFAULT_DOMAIN_BASE``."""
    return int(os.environ.get("TPS_EVAL_DOMAIN_BASE", DEFAULT_DOMAIN_BASE))


def check_domains(domain_base: int, workers: int) -> None:
    """ValueError naming the problem when the domains base..base+workers-1 are not valid."""
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if domain_base < 0 or domain_base + workers - 1 > MAX_DOMAIN_ID:
        raise ValueError(f"ROS domains {domain_base}..{domain_base + workers - 1} outside "
                         f"0..{MAX_DOMAIN_ID}; choose another --domain-base")


# --- local process pool --------------------------------------------------------------------------
_SLOT: int | None = None
_DOMAIN_BASE = DEFAULT_DOMAIN_BASE


def _init_local_worker(slots, domain_base: int) -> None:
    global _SLOT, _DOMAIN_BASE
    _SLOT = slots.get()
    _DOMAIN_BASE = domain_base


def _run_in_local_worker(spec: EpisodeSpec) -> dict:
    from tps_eval.runner import run_episode

    return run_episode(spec, _DOMAIN_BASE + int(_SLOT or 0))


def run_local(specs: Sequence[EpisodeSpec], workers: int,
              domain_base: int | None = None) -> Iterator[dict]:
    """Run episodes on a spawn-context process pool of ``workers``; yields results as they
    finish."""
    base = default_domain_base() if domain_base is None else domain_base
    check_domains(base, workers)
    ctx = mp.get_context("spawn")
    slots = ctx.Queue()
    for i in range(workers):
        slots.put(i)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_local_worker,
                             initargs=(slots, base)) as pool:
        pending = {pool.submit(_run_in_local_worker, s) for s in specs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                yield f.result()


# --- Ray ----------------------------------------------------------------------------------------
def _ray_runtime_env() -> dict:
    env_vars = {"ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE",
                                                                "LOCALHOST")}
    if os.environ.get("_ROS_WHEELS_BOOTSTRAP_COMPLETE") and not os.environ.get("LD_LIBRARY_PATH"):
        env_vars["_ROS_WHEELS_BOOTSTRAP_COMPLETE"] = ""
    return {"env_vars": env_vars}


def ensure_ray(workers: int, address: str | None = None) -> bool:
    """Connect to Ray unless already connected: the cluster at ``address``, else a local Ray
    with ``num_cpus=workers`` and no dashboard. True when this call started it (the caller
    shuts it down); a caller that runs many batches keeps one Ray across them."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, runtime_env=_ray_runtime_env(), log_to_driver=False)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, runtime_env=_ray_runtime_env(),
                 log_to_driver=False)
    return True


def run_ray(specs: Sequence[EpisodeSpec], workers: int, domain_base: int | None = None,
            address: str | None = None) -> Iterator[dict]:
    """Run episodes as Ray actor tasks (one actor per slot); yields results as they finish.

    Args:
        address: a Ray cluster address; None starts a local Ray with ``num_cpus=workers`` (and
            no dashboard) and shuts it down afterwards.
    """
    import ray

    base = default_domain_base() if domain_base is None else domain_base
    check_domains(base, workers)
    started_here = ensure_ray(workers, address)
    try:
        @ray.remote(num_cpus=1)
        class EpisodeWorker:
            """Runs episodes on its own ROS domain (base + slot)."""

            def __init__(self, domain_id: int) -> None:
                self.domain_id = domain_id

            def run(self, spec: EpisodeSpec) -> dict:
                from tps_eval.runner import run_episode

                return run_episode(spec, self.domain_id)

        actors = [EpisodeWorker.remote(base + i) for i in range(workers)]
        queue = list(specs)
        running: dict = {}
        for actor in actors:
            if queue:
                running[actor.run.remote(queue.pop(0))] = actor
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            ref = done[0]
            actor = running.pop(ref)
            if queue:
                running[actor.run.remote(queue.pop(0))] = actor
            yield ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


def run_episodes(specs: Sequence[EpisodeSpec], executor: str = "local", workers: int = 1,
                 domain_base: int | None = None, ray_address: str | None = None,
                 on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Run every episode on the chosen executor; ``on_result`` is called as each finishes."""
    if executor not in EXECUTORS:
        raise ValueError(f"--executor must be one of {list(EXECUTORS)}, got {executor!r}")
    it = (run_local(specs, workers, domain_base) if executor == "local"
          else run_ray(specs, workers, domain_base, ray_address))
    results = []
    for r in it:
        results.append(r)
        if on_result is not None:
            on_result(r)
    return results
