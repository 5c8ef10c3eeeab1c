"""The live gateway against its OpenAPI description (docs/openapi.yaml), driven by schemathesis.

A real gateway process in front of the session's broker gets requests that schemathesis draws
from the description, for every operation in it (one test item each): valid ones and, as many,
ones that break the description (wrong types, missing or extra fields, odd path segments and
query values, bodies that are not JSON). What a client must observe, whatever it sends:

- no 5xx: with a reachable broker, nothing a client sends is the gateway's failure;
- every status is one the operation documents, with a media type it documents for it;
- every body matches the schema documented for that status and media type, and the documented
  response headers (``Allow``, ``Retry-After``, ...) their schemas;
- on the paths without parameters, every method the path does not serve is 405 with an
  ``Allow`` header that names the path's methods (schemathesis's coverage phase sends them).

Path parameters are steered to the live cluster id, topic and broker most of the time (a
generated value is kept when its text's length is a multiple of 8), so that most requests get
past the 404s to the endpoint's own checks, and some still name what does not exist.

Under ``make test`` (hypothesis profile ``ci``, tests/fuzz/conftest.py) the run is fixed: one
seed, derandomized, a fixed number of examples per operation, about 450 requests; it takes
about 20 seconds here (requests that name an unknown topic or list the cluster wait for a
metadata refresh, at most two a second: docs/api.md §6, so those operations get few examples).
Under ``make fuzz`` it draws new examples, more of them, again and again for its share of
FUZZ_SECONDS, and keeps failures in .hypothesis/ to replay them first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from confluent_kafka.admin import AdminClient
from schemathesis.config import SchemathesisConfig
from support.gateway import GatewayProcess
from support.kafka import create_topic

from gateway.kafka.embedded import EmbeddedBroker

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")  # as tests/fuzz/conftest.py chooses it
FUZZ = PROFILE == "fuzz"
SEED = 20261121

# Examples per operation (schemathesis's fuzzing phase): (ci, fuzz).
EXAMPLES = (20, int(os.environ.get("FUZZ_EXAMPLES", "100")))[FUZZ]
# Operations whose every request waits for a metadata refresh (listings, the cluster): few.
REFRESHING = r"^/(?:topics|brokers)$|/v3/clusters(?:/\{cluster_id\}(?:/brokers(?:/\{broker_id\})?|/topics)?)?$"
REFRESHING_EXAMPLES = (3, 10)[FUZZ]
# The v3 topic and partition reads: fewer, in case they refresh too.
V3_READS = r"/v3/clusters/\{cluster_id\}/topics/\{topic_name\}(?:/partitions(?:/\{partition_id\})?)?$"
V3_READS_EXAMPLES = (8, 30)[FUZZ]
# Paths without parameters also get the coverage phase: boundary cases and every method they
# do not serve (405 and Allow).
NO_PARAMETERS = r"^/(?:|healthz|readyz|metrics|topics|brokers|v3/clusters|kafka/v3/clusters)$"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "unsupported_method",
    "allow_header_conformance",
)

schema = schemathesis.openapi.from_path(
    SPEC,
    config=SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "request-timeout": 30,
            # As tests/fuzz/conftest.py: a slow or large draw is no failure of the gateway.
            "suppress-health-check": ["too_slow", "data_too_large", "filter_too_much"],
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES,
                "deterministic": not FUZZ,
                "database": ".hypothesis/schemathesis" if FUZZ else "none",
            },
            "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": False}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "operations": [
                {"include-path-regex": REFRESHING, "generation": {"max-examples": REFRESHING_EXAMPLES}},
                {"include-path-regex": V3_READS, "generation": {"max-examples": V3_READS_EXAMPLES}},
                {"include-path-regex": NO_PARAMETERS, "phases": {"coverage": {"enabled": True}}},
            ],
        }
    ),
)

# What exists on the live cluster, by path parameter name (filled by the ``live`` fixture
# before any case is generated).
REAL: dict[str, Any] = {}


@schema.hook
def map_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    if not path_parameters:
        return path_parameters
    out = dict(path_parameters)
    for name, value in path_parameters.items():
        if name in REAL and len(str(value)) % 8:
            out[name] = REAL[name]
    return out


@schema.hook
def filter_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> bool:
    # "." and ".." are dot-segments: the HTTP client removes them from the URL before sending
    # (RFC 3986 §5.2.4), so such a case would not reach the operation it names.
    return not any(str(v) in (".", "..") for v in (path_parameters or {}).values())


@schema.hook
def map_query(context: Any, query: dict[str, Any] | None) -> Any:
    # A consume stream (docs/api.md §13) lasts until its client closes it: the streams this
    # test opens end by themselves, soon (the checks read the whole answer).
    operation = getattr(context, "operation", None)
    if operation is None or not operation.path.endswith("/records:stream"):
        return query
    out = dict(query) if isinstance(query, dict) else {}
    out["idle_timeout_ms"] = 300
    out["max_records"] = 5
    return out


@pytest.fixture(scope="module")
def live_gateway(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(
        ["--bootstrap-servers", broker.bootstrap],
        tmp_path_factory.mktemp("openapi") / "gateway.log",
    )
    try:
        yield g
    finally:
        g.stop()
    g.assert_no_crash()


@pytest.fixture(scope="module")
def live(live_gateway: GatewayProcess, broker: EmbeddedBroker) -> str:
    """The gateway's base URL, with REAL filled from the live cluster."""
    topic = create_topic(broker.bootstrap, "openapi-live", 3)
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    REAL.update(
        cluster_id=md.cluster_id,
        topic=topic,
        topic_name=topic,
        broker_id=min(md.brokers),
    )
    return f"http://{live_gateway.host}:{live_gateway.port}"


@schema.parametrize()
def test_gateway_answers_as_documented(case: Any, live: str) -> None:
    case.call_and_validate(base_url=live)
