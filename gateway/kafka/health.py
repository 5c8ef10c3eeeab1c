"""Whether the gateway can reach Kafka now: one answer, fed by every source that knows.

Sources report what they see under their own name: the embedded broker's supervisor (its
process exited or came back), the producer (librdkafka says every broker is down, or a record
was acknowledged again). The cluster counts as unreachable while any source says so; the reason
shown is the first such source's, librdkafka's last (a source that knows the cause, such as the
embedded broker's exit, says more than "every broker connection is down", which follows from
it and may be noticed a few milliseconds sooner). Endpoints that need Kafka answer 503/50003 at once while it
is unreachable instead of waiting on a timeout, and /readyz says 503.

Runs on the event loop thread only; ``listen`` callbacks are told of every change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("gateway.kafka")

# Source names. What librdkafka says (every broker connection down) is cleared by any sign that
# Kafka answers again (``answered``); a source that watches a process clears itself.
LIBRDKAFKA = "librdkafka"


class ClusterHealth:
    def __init__(self) -> None:
        self._down: dict[str, str] = {}  # source -> why it says Kafka is unreachable
        self._listeners: list[Callable[[str | None], None]] = []
        # Why Kafka is unreachable now (None: nothing says it is); read on every request.
        self.down: str | None = None

    def mark_down(self, source: str, reason: str) -> None:
        was = self.down
        if self._down.get(source) == reason:
            return
        self._down[source] = reason
        if was is None:
            log.warning("Kafka is unreachable: %s", reason)
        self._changed()

    def mark_up(self, source: str) -> None:
        if not self._down or self._down.pop(source, None) is None:
            return
        if not self._down:
            log.info("Kafka is reachable again")
        self._changed()

    def answered(self) -> None:
        """Kafka answered a request (a delivery, a metadata listing): what librdkafka said
        about its connections is over; they reconnect by themselves."""
        self.mark_up(LIBRDKAFKA)

    def listen(self, callback: Callable[[str | None], None]) -> None:
        """``callback(down)`` after every change (``down`` as the property gives it)."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        # The reason shown prefers a source that watches something specific (the embedded
        # broker's process) over librdkafka's generic "every broker connection is down", which
        # often comes a few milliseconds earlier.
        down = None
        for source, reason in self._down.items():
            down = reason
            if source != LIBRDKAFKA:
                break
        self.down = down
        for callback in list(self._listeners):
            callback(down)
