"""Run a node graph: one child process per node (``processes``) or one host process that spins
every node on one executor (``single_process``, see :mod:`tps_bringup.host`).

Semantics (the same in both modes):

- every output line of a child is prefixed with ``[name] `` (the node name; the graph name for a
  single_process host);
- :meth:`GraphProcess.stop` (and SIGINT/SIGTERM received by :func:`run_graph`) sends the signal to
  every child, then escalates to SIGTERM and SIGKILL after ``grace_s`` each; a second signal to
  ``run_graph`` escalates at once;
- a *required* node that exits on its own stops the graph; the exit code is then non-zero unless it
  exited with code 0 (a node that finishes its job, e.g. a simulator at the end of an episode);
- a *respawning* node (``respawn: true``, processes mode only) that exits on its own, whatever its
  exit code, is started again after ``respawn_delay_s`` with the same command line and the
  environment variable ``TPS_RESPAWN_COUNT`` (tps_common.node.RESPAWN_ENV) set to its restart
  count; each restart is logged (``node 'x' exited with code N: respawn #k in D s`` then
  ``respawned 'x' (#k, pid P)``) and recorded in :attr:`GraphProcess.restarts`; a stop cancels a
  pending restart;
- the exit code after a requested stop is 0 when every child stopped by itself within the grace
  period (exit code 0 or killed by the signal sent), else 1; a failure is described in
  :attr:`GraphProcess.failure` and printed as ``node 'x' exited with code N``.

This module does not import rclpy (only :meth:`GraphProcess.wait_until_up` does, lazily).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tps_common.node import RESPAWN_ENV

from tps_bringup.graph import Graph, NodeInvocation, invocations

DEFAULT_GRACE_S = 5.0  # after the first signal, before escalating (SIGTERM, then SIGKILL)
POLL_PERIOD_S = 0.05
EXIT_OK = 0
EXIT_NODE_FAILED = 1
RUNNER_LABEL = "tps-bringup"
# A child that was stopped by the signal we sent counts as a clean stop.
_CLEAN_STOP_CODES = {0, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM}
_COLOURS = ("36", "33", "32", "35", "34", "91", "92", "93", "94", "95", "96")
_PR_SET_PDEATHSIG = 1
# The project's Fast DDS profile (large shared-memory segment for camera images; see the file),
# relative to the graph's repository root; applied unless FASTRTPS_DEFAULT_PROFILES_FILE is set.
DDS_PROFILE = "config/dds/fastdds.xml"
DDS_PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"


def use_project_dds_profile(root: Path, env: MutableMapping[str, str] | None = None) -> bool:
    """Give this process's own DDS participants the project's Fast DDS profile (``env``: the
    environment of the nodes tps-bringup starts instead), unless FASTRTPS_DEFAULT_PROFILES_FILE is
    set already.

    Call it before the process's first DDS participant: Fast DDS reads the profile file once, at
    its first participant (measured: a participant created after setting the variable late still
    got the default 512 KiB shared-memory segment, not the profile's 8 MiB). A writer of camera
    images with the default segment loses fragments and repairs them only after Fast DDS's default
    3 s heartbeat. Returns whether the variable was set here."""
    env = os.environ if env is None else env
    profile = Path(root) / DDS_PROFILE
    if DDS_PROFILE_ENV in env or not profile.is_file():
        return False
    env[DDS_PROFILE_ENV] = str(profile)
    return True


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every child gets: ours plus ``extra``, with the ROS wheels' bootstrap flag
    removed (so the child's venv python sets LD_LIBRARY_PATH itself) and unbuffered output (so
    log lines arrive, and are prefixed, as they happen)."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")  # line-buffered ROS log stream
    return env


def describe_exit(code: int) -> str:
    """``"exited with code 3"`` or ``"was killed by signal SIGSEGV"`` (negative Popen codes)."""
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _default_signals_preexec() -> None:  # pragma: no cover - runs in the forked child
    """Give the child default SIGINT/SIGTERM handling. A runner started in the background by a
    non-interactive shell (nohup, `cmd &`, some CI runners) inherits SIGINT *ignored*; children
    would inherit that too (Python and sh then never see the forwarded SIGINT) and every stop
    would have to escalate to SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pdeathsig_preexec() -> None:  # pragma: no cover - runs in the forked child
    """Default signals, and ask the kernel to SIGTERM the child if the thread that started it
    dies (runner killed)."""
    _default_signals_preexec()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


@dataclass
class Child:
    """One started child process."""

    label: str
    command: list[str]
    required: bool
    kind: str = "node"  # "node" or "single_process host" (in messages)
    popen: subprocess.Popen | None = None
    returncode: int | None = None
    reader: threading.Thread | None = None
    signals_sent: list[int] = field(default_factory=list)  # to the current process
    respawn: bool = False
    respawn_delay_s: float = 0.0
    colour: str = "0"
    restarts: int = 0                      # processes started after the first
    respawn_at: float | None = None        # monotonic time of a pending restart
    exits: list[tuple[int, float]] = field(default_factory=list)  # (exit code, monotonic time) of every process

    @property
    def pid(self) -> int | None:
        """Process id (None before start)."""
        return self.popen.pid if self.popen else None


@dataclass(frozen=True)
class Restart:
    """One restart of a respawning node (times: ``time.monotonic()``, the system-wide monotonic
    clock, comparable with other processes' on Linux)."""

    node: str
    count: int            # 1 for the first restart
    exit_code: int        # of the process that ended
    exited_at: float      # when the runner saw it end (within POLL_PERIOD_S)
    restarted_at: float   # when the new process was started
    pid: int              # of the new process

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dict(self.__dict__)


class GraphProcess:
    """A running graph (Python API; ``tps-bringup`` uses it too).

    Typical use::

        gp = GraphProcess(load_graph("config/graph/hello.yaml"), env={"ROS_DOMAIN_ID": "51"})
        gp.start()
        gp.wait_until_up(timeout_s=20)
        ...
        code = gp.stop()          # 0 on a clean stop
    """

    def __init__(
        self,
        graph: Graph,
        *,
        env: Mapping[str, str] | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        output: IO[str] | None = None,
        colour: bool | None = None,
        executor: str = "multi_threaded",
        kill_on_parent_death: bool = True,
    ) -> None:
        """
        Args:
            graph: a validated graph (:func:`tps_bringup.graph.load_graph`).
            env: extra environment variables for every child (e.g. ``ROS_DOMAIN_ID``).
            grace_s: seconds to wait after each stop signal before escalating (SIGTERM, SIGKILL).
            output: where the prefixed child output goes (default ``sys.stdout``).
            colour: colour the prefixes (default: when ``output`` is a terminal).
            executor: single_process mode: ``multi_threaded`` or ``single_threaded``.
            kill_on_parent_death: children get SIGTERM if this process dies (Linux prctl).
        """
        if executor not in ("multi_threaded", "single_threaded"):
            raise ValueError(f"executor must be multi_threaded or single_threaded, got {executor!r}")
        self.graph = graph
        self.env = child_environment(env)
        use_project_dds_profile(graph.root, self.env)
        self.grace_s = float(grace_s)
        self.output = output if output is not None else sys.stdout
        if colour is None:
            colour = bool(getattr(self.output, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ
        self.colour = colour
        self.executor = executor
        self.kill_on_parent_death = kill_on_parent_death
        self.children: list[Child] = self._plan()
        self.failure: str | None = None
        self.exit_code: int | None = None
        self.restarts: list[Restart] = []  # every restart of a respawning node, in order
        self._lock = threading.Lock()
        self._out_lock = threading.RLock()  # re-entrant: request_stop logs from signal handlers
        self._stop_signal: int | None = None
        self._escalate = threading.Event()
        self._started = threading.Event()
        self._done = threading.Event()
        self._start_error: BaseException | None = None
        self._monitor: threading.Thread | None = None

    # ------------------------------------------------------------------------------------ plan
    def _plan(self) -> list[Child]:
        if self.graph.mode == "single_process":
            command = [
                sys.executable, "-m", "tps_bringup.host", "--executor", self.executor, "--graph-json",
                self.graph.to_json(),
            ]
            required = any(n.required for n in self.graph.nodes)
            return [Child(label=self.graph.name, command=command, required=required, kind="single_process host",
                          colour=_COLOURS[0])]
        return [Child(label=inv.name, command=inv.command(), required=inv.required, respawn=inv.respawn,
                      respawn_delay_s=inv.respawn_delay_s, colour=_COLOURS[i % len(_COLOURS)])
                for i, inv in enumerate(invocations(self.graph))]

    def commands(self) -> list[tuple[str, list[str]]]:
        """(label, argv) of every child, as started (``--dry-run`` prints them)."""
        return [(c.label, list(c.command)) for c in self.children]

    def node_invocations(self) -> list[NodeInvocation]:
        """The per-node translation (also what a single_process host passes as ``cli_args``)."""
        return invocations(self.graph)

    # ---------------------------------------------------------------------------------- output
    def log(self, text: str) -> None:
        """A line from the runner itself, prefixed ``[tps-bringup]``."""
        self._write(RUNNER_LABEL, text, "1")

    def _write(self, label: str, text: str, colour: str) -> None:
        prefix = f"[{label}] "
        if self.colour:
            prefix = f"\033[{colour}m{prefix}\033[0m"
        with self._out_lock:
            try:
                self.output.write(prefix + text.rstrip("\n") + "\n")
                self.output.flush()
            except (ValueError, OSError):
                pass  # output closed (e.g. at interpreter exit): the child's line is lost, not the graph

    def _pump(self, child: Child, colour: str, popen: subprocess.Popen | None = None) -> None:
        popen = popen if popen is not None else child.popen
        assert popen is not None and popen.stdout is not None
        for raw in iter(popen.stdout.readline, b""):
            self._write(child.label, raw.decode("utf-8", errors="replace"), colour)
        popen.stdout.close()

    # ----------------------------------------------------------------------------- life cycle
    def start(self) -> GraphProcess:
        """Start every child (in graph order) and the monitor thread; return once all are started.

        The children are started from the monitor thread, which lives until they have all been
        reaped, so the parent-death signal (``kill_on_parent_death``) is tied to its lifetime.

        Raises:
            RuntimeError: when started twice or a child cannot be started (the others are stopped).
        """
        if self._monitor is not None:
            raise RuntimeError("graph already started")
        self._monitor = threading.Thread(target=self._run, name=f"tps-bringup:{self.graph.name}", daemon=True)
        self._monitor.start()
        self._started.wait()
        if self._start_error is not None:
            self._done.wait()
            raise RuntimeError(f"could not start graph '{self.graph.name}': {self._start_error}") from self._start_error
        atexit.register(self._atexit)
        return self

    def _spawn(self, child: Child) -> None:
        """Start ``child``'s process (again, for a restart: ``child.restarts`` already counted)."""
        linux = sys.platform.startswith("linux")
        preexec = _pdeathsig_preexec if (self.kill_on_parent_death and linux) else _default_signals_preexec
        env = self.env
        if child.restarts:
            env = dict(self.env, **{RESPAWN_ENV: str(child.restarts)})
        popen = subprocess.Popen(
            child.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.graph.root),
            start_new_session=True,  # terminal Ctrl-C reaches the runner only; it forwards
            preexec_fn=preexec,
        )
        child.popen = popen
        child.returncode = None
        child.signals_sent = []
        child.reader = threading.Thread(target=self._pump, args=(child, child.colour, popen), daemon=True)
        child.reader.start()

    def _spawn_all(self) -> None:
        for child in self.children:
            self._spawn(child)
            self.log(f"started '{child.label}' (pid {child.pid}): {shlex.join(child.command[:1])}")

    def _respawn_due(self) -> None:
        """Restart every respawning child whose delay has run out (monitor thread only)."""
        now = time.monotonic()
        for child in self.children:
            if child.respawn_at is None or now < child.respawn_at:
                continue
            child.respawn_at = None
            exit_code, exited_at = child.exits[-1]
            child.restarts += 1
            try:
                self._spawn(child)
            except OSError as exc:
                child.restarts -= 1
                self.log(f"could not respawn {child.kind} '{child.label}': {exc} (it stays down)")
                continue
            self.restarts.append(Restart(child.label, child.restarts, exit_code, exited_at, time.monotonic(),
                                         child.pid))
            self.log(f"respawned '{child.label}' (#{child.restarts}, pid {child.pid}, "
                     f"{time.monotonic() - exited_at:.2f} s after it ended)")

    def restart_counts(self) -> dict[str, int]:
        """label -> number of restarts of every respawning child."""
        return {c.label: c.restarts for c in self.children if c.respawn}

    def _run(self) -> None:
        try:
            self._spawn_all()
        except BaseException as exc:  # noqa: BLE001 - reported to start()'s caller
            self._start_error = exc
            self._stop_signal = signal.SIGTERM
        finally:
            self._started.set()
        try:
            self._supervise()
        finally:
            for child in self.children:
                if child.reader is not None:
                    child.reader.join(timeout=1.0)
            self._done.set()

    def _poll_children(self) -> list[Child]:
        """Reap children that exited since the last poll; return them."""
        exited = []
        for child in self.children:
            if child.popen is not None and child.returncode is None:
                code = child.popen.poll()
                if code is not None:
                    child.returncode = code
                    child.exits.append((code, time.monotonic()))
                    exited.append(child)
        return exited

    def _alive(self) -> list[Child]:
        return [c for c in self.children if c.popen is not None and c.returncode is None]

    def _supervise(self) -> None:
        while True:
            for child in self._poll_children():
                if self._stop_signal is not None:
                    continue
                what = f"{child.kind} '{child.label}' {describe_exit(child.returncode)}"
                if child.respawn:
                    child.respawn_at = time.monotonic() + child.respawn_delay_s
                    self.log(f"{what}: respawn #{child.restarts + 1} in {child.respawn_delay_s:g} s")
                elif child.required:
                    if child.returncode == 0:
                        self.log(f"{what}: required node finished, stopping the graph")
                    else:
                        self.failure = what
                        self.log(f"{what}: required node failed, stopping the graph")
                    self._request_stop(signal.SIGINT)
                else:
                    self.log(f"{what} (not required: the graph keeps running)")
            if self._stop_signal is None:
                self._respawn_due()
            else:
                for child in self.children:
                    if child.respawn_at is not None:
                        child.respawn_at = None
                        self.log(f"respawn of '{child.label}' cancelled: the graph is stopping")
            if not self._alive() and not any(c.respawn_at is not None for c in self.children):
                break
            if self._stop_signal is not None:
                self._shutdown_children()
                continue
            time.sleep(POLL_PERIOD_S)
        self.exit_code = self._final_exit_code()

    def _shutdown_children(self) -> None:
        """Send the stop signal, then SIGTERM, then SIGKILL, waiting ``grace_s`` between them."""
        sequence = [self._stop_signal]
        if self._stop_signal != signal.SIGTERM:
            sequence.append(signal.SIGTERM)
        sequence.append(signal.SIGKILL)
        for sig in sequence:
            alive = self._alive()
            if not alive:
                return
            if sig != sequence[0]:
                self.log(
                    f"{', '.join(repr(c.label) for c in alive)} still running after {self.grace_s:g} s: "
                    f"sending {signal.Signals(sig).name}"
                )
            for child in alive:
                child.signals_sent.append(sig)
                try:
                    os.killpg(child.pid, sig)  # the child's whole session (its own subprocesses too)
                except ProcessLookupError:
                    pass
            self._escalate.clear()
            deadline = time.monotonic() + self.grace_s
            while time.monotonic() < deadline and not self._escalate.is_set():
                self._poll_children()
                if not self._alive():
                    return
                time.sleep(POLL_PERIOD_S)
        self._poll_children()
        for child in self._alive():  # pragma: no cover - SIGKILL cannot be ignored
            child.returncode = child.popen.wait()

    def _final_exit_code(self) -> int:
        if self._start_error is not None:
            return EXIT_NODE_FAILED
        if self.failure is not None:
            return EXIT_NODE_FAILED
        unclean = []
        for child in self.children:
            code = child.returncode
            if code is None:
                continue
            if not child.required and not child.signals_sent:
                continue  # a non-required node that ended on its own was reported then; not a failure
            killed = signal.SIGKILL in child.signals_sent or signal.SIGTERM in child.signals_sent[1:]
            if killed:
                unclean.append(f"{child.kind} '{child.label}' did not stop within {self.grace_s:g} s and {describe_exit(code)}")
            elif code not in (_CLEAN_STOP_CODES if child.signals_sent else {0}):
                unclean.append(f"{child.kind} '{child.label}' {describe_exit(code)}")
        if unclean:
            self.failure = "; ".join(unclean)
            self.log(f"unclean stop: {self.failure}")
            return EXIT_NODE_FAILED
        return EXIT_OK

    def _request_stop(self, sig: int) -> None:
        with self._lock:
            if self._stop_signal is None:
                self._stop_signal = sig
            else:
                self._escalate.set()

    def request_stop(self, sig: int = signal.SIGINT) -> None:
        """Ask the graph to stop (non-blocking; safe from a signal handler). A second request
        skips the rest of the current grace period."""
        if self._stop_signal is None:
            self.log(f"stopping the graph ({signal.Signals(sig).name})")
        self._request_stop(sig)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float | None = None) -> int | None:
        """Stop every child and wait; return the exit code (None if ``timeout_s`` ran out)."""
        if self._monitor is None:
            return None
        self.request_stop(sig)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Wait for the graph to end (by itself or stopped); return its exit code or None on timeout."""
        if self._monitor is None:
            raise RuntimeError("graph not started")
        if not self._done.wait(timeout_s):
            return None
        return self.exit_code

    def poll(self) -> int | None:
        """The exit code if the graph has ended, else None."""
        return self.exit_code if self._done.is_set() else None

    @property
    def running(self) -> bool:
        """Started and not yet ended."""
        return self._monitor is not None and not self._done.is_set()

    def pids(self) -> dict[str, int]:
        """label -> pid of every started child."""
        return {c.label: c.pid for c in self.children if c.pid is not None}

    def wait_until_up(self, timeout_s: float = 30.0, nodes: list[str] | None = None) -> bool:
        """Wait until every node of the graph (or only those named in ``nodes``) is visible on the
        ROS graph (DDS discovery).

        Uses rclpy in this process, on the children's ``ROS_DOMAIN_ID``; the other discovery
        settings (``ROS_AUTOMATIC_DISCOVERY_RANGE``) are this process's own, so keep them equal.

        Returns:
            True when all are up; False on timeout or if the graph ended first.
        """
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        wanted = set(nodes) if nodes is not None else {n.name for n in self.graph.nodes}
        unknown = wanted - {n.name for n in self.graph.nodes}
        if unknown:
            raise ValueError(f"no node(s) {sorted(unknown)} in graph '{self.graph.name}'")
        expected = {n.full_name for n in self.graph.nodes if n.name in wanted}
        domain = int(self.env.get("ROS_DOMAIN_ID", "0") or 0)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
        try:
            probe = rclpy.create_node(
                f"_tps_bringup_probe_{os.getpid()}", context=context, start_parameter_services=False,
                enable_rosout=False,
            )
            deadline = time.monotonic() + timeout_s
            try:
                while time.monotonic() < deadline:
                    if self._done.is_set():
                        return False
                    names = {
                        f"{ns.rstrip('/')}/{name}" for name, ns in probe.get_node_names_and_namespaces()
                    }
                    if expected <= names:
                        return True
                    time.sleep(0.1)
                return False
            finally:
                probe.destroy_node()
        finally:
            context.try_shutdown()

    def _atexit(self) -> None:
        if self.running:
            self.stop(signal.SIGTERM, timeout_s=3 * self.grace_s)

    def __enter__(self) -> GraphProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.running:
            self.stop()


def run_graph(
    graph: Graph,
    *,
    env: Mapping[str, str] | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    output: IO[str] | None = None,
    colour: bool | None = None,
    executor: str = "multi_threaded",
    handle_signals: bool = True,
    duration_s: float | None = None,
) -> int:
    """Run a graph in the foreground until it ends or SIGINT/SIGTERM arrives; return the exit code.

    With ``handle_signals`` (main thread only) SIGINT/SIGTERM are forwarded to every child; a
    second one escalates immediately. With ``duration_s`` the graph is stopped (SIGINT, a clean
    stop) after that many seconds of wall-clock time.
    """
    gp = GraphProcess(graph, env=env, grace_s=grace_s, output=output, colour=colour, executor=executor)
    previous = {}
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, _frame: gp.request_stop(signum))
    try:
        try:
            gp.start()
        except RuntimeError as exc:
            gp.log(str(exc))
            return EXIT_NODE_FAILED
        deadline = time.monotonic() + duration_s if duration_s is not None else None
        while True:
            code = gp.wait(0.2)  # short waits so signal handlers run promptly in the main thread
            if code is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                gp.log(f"--duration-s {duration_s:g} s reached")
                gp.request_stop(signal.SIGINT)
                deadline = None
        restarted = {k: v for k, v in gp.restart_counts().items() if v}
        restarts = (" (restarts: " + ", ".join(f"'{k}' {v}" for k, v in restarted.items()) + ")") if restarted else ""
        if gp.failure:
            gp.log(f"graph '{graph.name}' failed: {gp.failure}{restarts}")
        else:
            gp.log(f"graph '{graph.name}' stopped{restarts}")
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_build_only(graph: Graph, *, env: Mapping[str, str] | None = None, output: IO[str] | None = None,
                   colour: bool | None = None) -> int:
    """Run every node of a build-only graph (:func:`tps_bringup.deploy.build_only_graph`) to its
    end, one after the other (engine builds would compete for the GPU), output prefixed as usual.

    Returns:
        0 when every node exited 0 (every engine ready), else 1; 0 with a message when the graph
        has no model node.
    """
    gp = GraphProcess(graph, env=env, output=output, colour=colour)  # for its environment and output
    if not graph.nodes:
        gp.log(f"graph '{graph.name}' has no model node (none declares build_only): nothing to build")
        return EXIT_OK
    failed = []
    for i, inv in enumerate(invocations(graph)):
        gp.log(f"build_only: '{inv.name}' ({i + 1}/{len(graph.nodes)})")
        proc = subprocess.Popen(inv.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=gp.env, cwd=str(graph.root),
                                preexec_fn=_default_signals_preexec)
        child = Child(label=inv.name, command=inv.command(), required=True, popen=proc)
        gp._pump(child, _COLOURS[i % len(_COLOURS)], proc)
        code = proc.wait()
        if code != 0:
            failed.append(f"'{inv.name}' {describe_exit(code)}")
    gp.log("build_only: " + ("every model node is ready" if not failed else "NOT ready: " + "; ".join(failed)))
    return EXIT_NODE_FAILED if failed else EXIT_OK
