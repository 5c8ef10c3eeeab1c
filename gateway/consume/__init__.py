"""The consume path: v1 reads of one partition from an offset (knows Kafka and the v1 answer
format; the HTTP side is the handler in ``gateway.consume.v1``).

``ConsumerPool`` (``gateway.consume.pool``) lends long-lived librdkafka consumers to requests
from a bounded set of worker threads; ``on_consume_v1`` parses, checks and answers a request.
"""

from __future__ import annotations

from gateway.consume.pool import (
    ConsumedRecord,
    ConsumerPool,
    ConsumerPoolBusy,
    OffsetOutOfRangeError,
)

__all__ = ["ConsumedRecord", "ConsumerPool", "ConsumerPoolBusy", "OffsetOutOfRangeError"]
