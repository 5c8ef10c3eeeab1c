"""URL routing: which endpoint a request path names (knows HTTP paths, not Kafka)."""

from __future__ import annotations

from urllib.parse import unquote

# Endpoint names and the methods each accepts.
PRODUCE_V3 = "produce_v3"
PRODUCE_V3_BATCH = "produce_v3_batch"
ROOT = "root"
HEALTHZ = "healthz"

METHODS = {
    PRODUCE_V3: ("POST",),
    PRODUCE_V3_BATCH: ("POST",),
    ROOT: ("GET",),
    HEALTHZ: ("GET",),
}


def match(path: str) -> tuple[str, dict[str, str]] | None:
    """The endpoint for ``path`` and its path parameters, or None (404)."""
    if path == "/":
        return ROOT, {}
    parts = path.split("/")
    # ['', 'kafka', 'v3', 'clusters', C, 'topics', T, 'records'] or without 'kafka'
    if parts[1:2] == ["kafka"]:
        parts = parts[1:]
    n = len(parts)
    if n == 7 and parts[1] == "v3" and parts[2] == "clusters" and parts[4] == "topics":
        if parts[3] and parts[5]:
            params = {"cluster_id": unquote(parts[3]), "topic": unquote(parts[5])}
            if parts[6] == "records":
                return PRODUCE_V3, params
            if parts[6] == "records:batch":
                return PRODUCE_V3_BATCH, params
        return None
    if path == "/healthz":
        return HEALTHZ, {}
    return None
