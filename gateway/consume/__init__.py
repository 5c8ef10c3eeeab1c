"""The consume path: v1 reads of one partition from an offset (knows Kafka and the v1 answer
format, not HTTP; the endpoint is ``gateway.api.consume_v1``).

``ConsumerPool`` (``gateway.consume.pool``) lends long-lived compiled consumers
(``gateway._speedups.RdConsumer``, whose fetch writes the answer) to requests from a bounded
set of worker threads.
"""

from __future__ import annotations

from gateway.consume.pool import (
    ConsumeResult,
    ConsumerPool,
    ConsumerPoolBusy,
    OffsetOutOfRangeError,
)

__all__ = ["ConsumeResult", "ConsumerPool", "ConsumerPoolBusy", "OffsetOutOfRangeError"]
