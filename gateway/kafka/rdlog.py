"""librdkafka's log lines, calmly: one line per broker state change, a summary of the rest.

While a broker is away librdkafka says the same thing again and again ("Connect to ... failed:
Connection refused (after 0ms in state CONNECT)" at every reconnect, on every client thread):
tens of lines a second. ``LogThrottle`` writes a line when what a broker (or librdkafka as a
whole) says changes, and holds the repeats; at most every ``SUMMARY_INTERVAL`` seconds one line
says how many were held and which. Lines are compared without their numbers and timings, so
"after 12ms" and "after 15ms" are the same thing said twice.

Runs on the event loop thread: the producer hands it the lines its poll collected.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

log = logging.getLogger("gateway.rdkafka")

SUMMARY_INTERVAL = 10.0
_THREAD = re.compile(r"^\[thrd:([^\]]*)\]: (?:[^ ]+: )?")
_VARYING = re.compile(r"\(after \d+ms in state [A-Z_]+\)|\d+")
# syslog levels (librdkafka's) to the logging module's.
_LEVELS = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL, 3: logging.ERROR,
           4: logging.WARNING, 5: logging.INFO, 6: logging.INFO, 7: logging.DEBUG}


class LogThrottle:
    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name  # which client, for the lines
        self._clock = clock
        self._said: dict[str, str] = {}  # broker (or "") -> the last thing it said, normalised
        self.held = 0
        self._held_example = ""
        self._summary_due = clock() + SUMMARY_INTERVAL

    def line(self, level: int, facility: str, text: str) -> None:
        match = _THREAD.match(text)
        broker = match.group(1) if match else ""
        what = text[match.end():] if match else text
        key = f"{facility} {_VARYING.sub('#', what)}"
        if self._said.get(broker) == key:
            self.held += 1
            self._held_example = f"{facility}: {text}"
        else:
            self._said[broker] = key
            log.log(_LEVELS.get(level, logging.INFO), "%s %s: %s", self._name, facility, text)
        self.tick()

    def lost(self, n: int) -> None:
        """Lines librdkafka produced beyond what one poll keeps: counted as held."""
        self.held += n

    def tick(self) -> None:
        """Write the summary of held lines when it is due (called after each poll)."""
        now = self._clock()
        if now < self._summary_due:
            return
        self._summary_due = now + SUMMARY_INTERVAL
        if self.held:
            log.info("%s: %d more librdkafka lines like these in the last %.0f s, e.g. %s",
                     self._name, self.held, SUMMARY_INTERVAL, self._held_example or "(not kept)")
            self.held = 0
            self._held_example = ""
