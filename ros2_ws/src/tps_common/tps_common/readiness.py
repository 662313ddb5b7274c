"""Reader-side discovery, reported: how many publishers each of a node's subscriptions has matched.

DDS matches a writer and a reader in two halves. A publisher's ``get_subscription_count()`` counts
the readers *the writer* has matched; the reader may not have matched that writer yet, and a
volatile reader drops what a writer sent before it matched (seen in CI: the replay's first lidar
frame never reached the monitor although the replay's publisher counted every reader; the monitor
then judged frame 0 with "lidar stale"). Only the node itself can tell that its reader has matched:
``Subscription.get_publisher_count()``.

Every node started through :func:`tps_common.node.run_node` therefore publishes, on
``INPUT_MATCHES_TOPIC`` (latched: a late joiner gets each node's newest report), one
``diagnostic_msgs/DiagnosticArray`` whenever the counts change: one status named after the node
(fully qualified), one key/value per subscribed topic (resolved name, after remapping) with the
number of publishers it has matched. A player that must not lose a first message (``tps-replay``
lockstep) waits until every node that reads a played topic reports at least one publisher on it.

Checked on a wall-clock timer (steady time, also under ``use_sim_time``: the check must run before
the first ``/clock``), every ``period_s``; a count that stays the same publishes nothing.

The same message carries the writer half too: a second status, named after the node plus
``OUTPUTS_SUFFIX``, with one key/value per published topic and the number of readers its writer has
matched (``Publisher.get_subscription_count()``). A reader that has matched a writer may still not
be matched *by* it, and a writer sends only to the readers it has matched: the synchronous bridge
released step 0 while the planner's candidate writer had not matched the arbiter's reader, the
arbiter never got the candidate of stamp 0 and drove step 0 on the fallback -- in 2 of 8 twin
episodes under load. :func:`parse_report` leaves that status out; :func:`parse_output_report`
reads it.
"""

from __future__ import annotations

INPUT_MATCHES_TOPIC = "/tps/graph/input_matches"
OUTPUTS_SUFFIX = "#outputs"
DEFAULT_PERIOD_S = 0.1


def input_match_counts(node) -> dict[str, int]:
    """{resolved topic: publishers matched} over ``node``'s subscriptions (the largest count where
    a node subscribes to one topic twice)."""
    return _match_counts(node.subscriptions, lambda sub: sub.get_publisher_count())


def output_match_counts(node) -> dict[str, int]:
    """{resolved topic: readers matched} over ``node``'s publishers (the largest count where a node
    publishes one topic twice)."""
    return _match_counts(node.publishers, lambda pub: pub.get_subscription_count())


def _match_counts(entities, matched) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entity in list(entities):
        try:
            topic, n = entity.topic_name, int(matched(entity))
        except Exception:  # noqa: BLE001 - an entity destroyed meanwhile is not reported
            continue
        counts[topic] = max(n, counts.get(topic, -1))
    return counts


def parse_output_report(msg) -> dict[str, dict[str, int]]:
    """{node: {topic: readers its writer matched}} of one report message (the writer half)."""
    return _parse(msg, outputs=True)


def parse_report(msg) -> dict[str, dict[str, int]]:
    """{node: {topic: publishers matched}} of one report message (values that are not integers
    are skipped; the writer half is left out)."""
    return _parse(msg, outputs=False)


def _parse(msg, outputs: bool) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for st in msg.status:
        if st.name.endswith(OUTPUTS_SUFFIX) != outputs:
            continue
        name = st.name[: -len(OUTPUTS_SUFFIX)] if outputs else st.name
        counts = {}
        for kv in st.values:
            try:
                counts[kv.key] = int(kv.value)
            except ValueError:
                continue
        out[name] = counts
    return out


class InputMatchReporter:
    """Publishes ``node``'s input match counts on ``INPUT_MATCHES_TOPIC`` when they change."""

    def __init__(self, node, period_s: float = DEFAULT_PERIOD_S) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.clock import Clock, ClockType

        from tps_common.qos import LATCHED_QOS

        self.node = node
        self.name = node.get_fully_qualified_name()
        self.last: tuple[dict[str, int], dict[str, int]] | None = None
        self._cls = DiagnosticArray
        self.pub = node.create_publisher(DiagnosticArray, INPUT_MATCHES_TOPIC, LATCHED_QOS)
        self.timer = node.create_timer(period_s, self.tick, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def tick(self) -> bool:
        """Publish if the counts changed; returns whether it published."""
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        counts = input_match_counts(self.node)
        outputs = {t: n for t, n in output_match_counts(self.node).items() if t != INPUT_MATCHES_TOPIC}
        if (counts, outputs) == self.last:
            return False
        self.last = (counts, outputs)
        msg = self._cls()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        unmatched = sorted(t for t, n in counts.items() if n < 1)
        msg.status = [DiagnosticStatus(
            level=DiagnosticStatus.OK, name=self.name, hardware_id="",
            message=(f"{len(counts) - len(unmatched)} of {len(counts)} inputs have a publisher"
                     + (f"; none yet: {', '.join(unmatched)}" if unmatched else "")),
            values=[KeyValue(key=t, value=str(n)) for t, n in sorted(counts.items())]),
            DiagnosticStatus(
                level=DiagnosticStatus.OK, name=self.name + OUTPUTS_SUFFIX, hardware_id="",
                message=f"readers matched by the writers of {len(outputs)} outputs",
                values=[KeyValue(key=t, value=str(n)) for t, n in sorted(outputs.items())])]
        self.pub.publish(msg)
        return True

    def destroy(self) -> None:
        self.node.destroy_timer(self.timer)
        self.node.destroy_publisher(self.pub)


def attach_input_match_reporter(node, log=None) -> InputMatchReporter | None:
    """An :class:`InputMatchReporter` on ``node``, kept on it (``node._tps_input_matches``); a
    failure to create one is printed and leaves the node running without it."""
    try:
        reporter = InputMatchReporter(node)
    except Exception as exc:  # noqa: BLE001 - the report is an aid to players, never a reason to stop
        (log or print)(f"input-match report not available on {getattr(node, 'get_name', lambda: '?')()}: {exc!r}")
        return None
    node._tps_input_matches = reporter
    return reporter
