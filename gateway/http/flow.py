"""Why a connection is not reading: a bitmask of reasons.

Reading pauses when the first reason appears and resumes only when the last one clears, never
because one reason cleared while another still holds, and never after the connection is lost.
"""

from __future__ import annotations

PAUSE_WRITE = 1 << 0  # the peer is not reading our responses (transport above its high mark)
PAUSE_BUFFER = 1 << 1  # the read buffer is full of bytes we cannot consume yet
PAUSE_WAITING = 1 << 2  # a request is waiting for a decision (metadata) or its response to end
PAUSE_STOPPED = 1 << 3  # reading stopped for good (fatal body error, shutdown, closing)
# Bits 4 and up belong to the body consumer (gateway.produce.session).

REASON_NAMES = {
    PAUSE_WRITE: "write",
    PAUSE_BUFFER: "buffer",
    PAUSE_WAITING: "waiting",
    PAUSE_STOPPED: "stopped",
    1 << 4: "in-flight",
    1 << 5: "kafka-queue",
}


def describe(mask: int) -> str:
    return ",".join(name for bit, name in REASON_NAMES.items() if mask & bit) or "-"
