"""Routing (gateway.http.routes): the cached lookup answers as the matcher does, and stays
bounded whatever paths a peer sends."""

from __future__ import annotations

import pytest

from gateway.http import routes

PATHS = [
    "/", "/healthz", "/topics", "/topics/t", "/topics/t%2Fx", "/topics/t/partitions",
    "/topics/t/partitions/3", "/topics/t/partitions/3/messages", "/topics/t/nope",
    "/v3/clusters/c/topics/t/records", "/kafka/v3/clusters/c/topics/t/records:batch",
    "/v3/clusters/c/topics/t/records:stream", "/v3/clusters/c/topics/t/partitions/1",
    "/v3/clusters/c/brokers/1", "/consumers/g", "/consumers/g/instances/i/positions/end",
    "/consumers/g/instances/i/topics/t", "/nowhere", "/v3/clusters//topics",
]


@pytest.mark.parametrize("path", PATHS)
def test_lookup_answers_as_match_the_first_time_and_every_time(path: str) -> None:
    expected = routes.match(path)
    assert routes.lookup(path) == expected
    assert routes.lookup(path) == expected


def test_the_cache_stays_bounded_and_keeps_no_unknown_path() -> None:
    for i in range(routes.CACHE_MAX + 100):
        assert routes.lookup(f"/topics/t{i}") == ({"GET": routes.TOPIC, "POST": routes.PRODUCE_V1},
                                                  {"topic": f"t{i}"})
        assert routes.lookup(f"/unknown/{i}") is None
    assert len(routes._CACHE) <= routes.CACHE_MAX
    assert not any(p.startswith("/unknown/") for p in routes._CACHE)
    long_path = "/topics/" + "x" * routes.CACHE_MAX_PATH
    assert routes.lookup(long_path) is not None and long_path not in routes._CACHE
