"""One exception hierarchy for the gateway; importable without the compiled extension.

Every class knows the HTTP status and the Confluent ``error_code`` it answers with
(docs/api.md: every error body is ``{"error_code": <int>, "message": "<text>"}``).

The split follows three kinds of failure:
- ``PeerError``: the client said something we refuse (4xx).
- ``UpstreamError``: Kafka could not do what was asked (5xx / Kafka-derived codes).
- ``GatewayBug``: an invariant of ours broke; never caused by input.

Two errors stop the gateway before it serves and are no HTTP answer: ``ConfigError`` (an
invalid setting) and ``StartError`` (what it needs at start is not available, e.g. its port).
"""

from __future__ import annotations

import json


class ConfigError(ValueError):
    """Invalid configuration: the message says which setting, where it came from, and why."""


class StartError(Exception):
    """The gateway cannot start (an address already in use): the message is the one line an
    operator reads."""


class GatewayError(Exception):
    status: int = 500
    error_code: int = 500

    def __init__(self, message: str, *, status: int | None = None, error_code: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if error_code is not None:
            self.error_code = error_code

    def body(self) -> bytes:
        return error_body(self.error_code, self.message)


def error_body(error_code: int, message: str) -> bytes:
    return json.dumps(
        {"error_code": error_code, "message": message}, separators=(",", ":")
    ).encode()


class PeerError(GatewayError):
    status = 400
    error_code = 400


class BadRequest(PeerError):
    status = 400
    error_code = 400


class Unauthorized(PeerError):
    """No credentials, or wrong ones (authentication is on; README "Security")."""

    status = 401
    error_code = 40101


class Forbidden(PeerError):
    """The principal is authenticated but the ACL does not allow the operation."""

    status = 403
    error_code = 40301


class NotFound(PeerError):
    status = 404
    error_code = 404


class MethodNotAllowed(PeerError):
    status = 405
    error_code = 405


class RequestTimeout(PeerError):
    status = 408
    error_code = 408


class LengthRequired(PeerError):
    status = 411
    error_code = 411


class PayloadTooLarge(PeerError):
    status = 413
    error_code = 413


class UriTooLong(PeerError):
    status = 414
    error_code = 414


class UnsupportedMediaType(PeerError):
    status = 415
    error_code = 415


class NotAcceptable(PeerError):
    status = 406
    error_code = 406


class OffsetOutOfRange(PeerError):
    status = 416
    error_code = 41601


class Unprocessable(PeerError):
    status = 422
    error_code = 422


class ExpectationFailed(PeerError):
    status = 417
    error_code = 417


class EmptyBody(PeerError):
    status = 422
    error_code = 42206


class HeadersTooLarge(PeerError):
    status = 431
    error_code = 431


class NotImplementedByGateway(PeerError):
    status = 501
    error_code = 501


class TopicNotFound(PeerError):
    status = 404
    error_code = 40401


class TooManyRequests(PeerError):
    """Too many concurrent produce streams or requests for this principal (429/42902)."""

    status = 429
    error_code = 42902


class PartitionNotFound(PeerError):
    status = 404
    error_code = 40402


class UpstreamError(GatewayError):
    status = 500
    error_code = 50002


class KafkaRequestFailed(UpstreamError):
    """The whole request could not be handed to Kafka (Confluent's 50001)."""

    status = 500
    error_code = 50001


class KafkaUnavailable(UpstreamError):
    status = 503
    error_code = 50003


class ShuttingDown(UpstreamError):
    status = 503
    error_code = 50003


class AuthBusy(GatewayError):
    """Too many password verifications are already running or queued: retry shortly."""

    status = 503
    error_code = 50003


class GatewayBug(GatewayError):
    status = 500
    error_code = 500
