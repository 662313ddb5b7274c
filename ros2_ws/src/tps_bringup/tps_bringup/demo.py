"""Core of the two demo nodes (talker, listener): ROS-free, so it is unit-testable anywhere.

The demo graph (``config/graph/hello.yaml``) and the runner's tests use them: the talker publishes
numbered text at a fixed rate and can be told to exit with a chosen code after N messages (to
exercise the runner's crash handling); the listener counts what it hears.
"""

from __future__ import annotations

from dataclasses import dataclass

# Parameter schemas in the format of tps_common.params (validated at node start-up). They live
# here rather than in config/schema/ because the demo nodes are part of the runner package.
TALKER_SCHEMA: dict = {
    "node": "tps_demo_talker",
    "parameters": {
        "rate_hz": {"type": "number", "unit": "Hz", "default": 10.0, "exclusiveMinimum": 0.0,
                    "maximum": 1000.0, "description": "publishing rate"},
        "message": {"type": "string", "default": "hello", "description": "text before the counter"},
        "exit_after": {"type": "integer", "default": 0, "minimum": 0,
                       "description": "exit after this many messages (0: never)"},
        "exit_code": {"type": "integer", "default": 1, "minimum": 0, "maximum": 255,
                      "description": "process exit code used when exit_after is reached"},
    },
}

LISTENER_SCHEMA: dict = {
    "node": "tps_demo_listener",
    "parameters": {
        "log_every": {"type": "integer", "default": 1, "minimum": 1,
                      "description": "log one line per this many messages"},
    },
}


class DemoExit(RuntimeError):
    """Raised by the talker node when ``exit_after`` is reached.

    A plain exception (not ``SystemExit``) so that it also leaves a ``MultiThreadedExecutor``,
    which drops ``SystemExit`` raised in its worker threads; ``exit_code`` is the process exit code
    (``main()`` and the single_process host both honour an integer ``exit_code`` attribute).
    """

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class TalkerParams:
    """Validated talker parameters (see TALKER_SCHEMA)."""

    rate_hz: float = 10.0
    message: str = "hello"
    exit_after: int = 0
    exit_code: int = 1

    @property
    def period_s(self) -> float:
        """Timer period in seconds."""
        return 1.0 / self.rate_hz


@dataclass(frozen=True)
class TalkerStep:
    """What the talker does on one tick."""

    text: str | None  # message to publish (None: nothing)
    exit_code: int | None  # exit the process with this code after publishing (None: keep going)
    count: int  # messages published so far, this one included


class Talker:
    """Numbered messages; optionally ends the process after ``exit_after`` of them."""

    def __init__(self, params: TalkerParams) -> None:
        self.params = params
        self.count = 0

    def update(self) -> TalkerStep:
        """One timer tick."""
        if self.params.exit_after and self.count >= self.params.exit_after:
            return TalkerStep(text=None, exit_code=self.params.exit_code, count=self.count)
        self.count += 1
        done = bool(self.params.exit_after) and self.count >= self.params.exit_after
        return TalkerStep(
            text=f"{self.params.message} {self.count}",
            exit_code=self.params.exit_code if done else None,
            count=self.count,
        )


@dataclass(frozen=True)
class ListenerResult:
    """What the listener does with one message."""

    count: int
    log_line: str | None  # None: do not log this one


class Listener:
    """Counts received messages; logs every ``log_every``-th."""

    def __init__(self, log_every: int = 1) -> None:
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        self.log_every = log_every
        self.count = 0

    def update(self, text: str) -> ListenerResult:
        """One received message."""
        self.count += 1
        line = f"heard {text!r} (#{self.count})" if self.count % self.log_every == 0 else None
        return ListenerResult(count=self.count, log_line=line)
