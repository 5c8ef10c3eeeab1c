"""The consume path: v1 reads of one partition from an offset (knows Kafka and the v1 answer
format, not HTTP; the endpoint is ``gateway.api.consume_v1``).

``ConsumerPool`` (``gateway.consume.pool``) lends long-lived librdkafka consumers to requests
from a bounded set of worker threads; ``gateway.consume.v1.encode_records`` writes the answer.
"""

from __future__ import annotations

from gateway.consume.pool import (
    ConsumedRecord,
    ConsumerPool,
    ConsumerPoolBusy,
    OffsetOutOfRangeError,
)

__all__ = ["ConsumedRecord", "ConsumerPool", "ConsumerPoolBusy", "OffsetOutOfRangeError"]
