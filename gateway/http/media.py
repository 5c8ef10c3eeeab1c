"""Media types (RFC 9110 §8.3.1) and ``Accept`` negotiation (§12.5.1): the one parser of both.

Knows HTTP only; which types an endpoint takes and offers is the endpoint's business (gateway/api).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import NotAcceptable


def split_media_type(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``type/subtype`` in lower case and every non-empty parameter as (name in lower case,
    value unquoted), in order; a parameter without ``=`` has the value ``""``."""
    media, *params = text.split(";")
    out: list[tuple[str, str]] = []
    for param in params:
        if not param.strip():
            continue
        name, _, value = param.partition("=")
        out.append((name.strip().lower(), value.strip().strip('"')))
    return media.strip().lower(), out


def parse_media_type(text: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` in lower case and the named parameters as a dict."""
    media, params = split_media_type(text)
    return media, {name: value for name, value in params if name}


def is_json(content_type: str | None) -> bool:
    """``application/json``, with no parameter but ``charset=utf-8`` (any case, quoted or not)."""
    if content_type == "application/json":  # what nearly every request says
        return True
    if content_type is None:
        return False
    media, params = split_media_type(content_type)
    return media == "application/json" and all(
        name == "charset" and value.lower() == "utf-8" for name, value in params
    )


def accept_ranges(accept: str) -> list[tuple[str, float]]:
    """The media ranges of an ``Accept`` value with their q-values; malformed ranges dropped."""
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        if not part.strip():
            continue
        media, params = parse_media_type(part)
        if media == "*":  # old Java clients send a bare "*"
            media = "*/*"
        q = 1.0
        if "q" in params:
            try:
                q = float(params["q"])
            except ValueError:
                continue  # a malformed range says nothing: skip it
            if not 0.0 <= q <= 1.0:
                continue
        ranges.append((media, q))
    return ranges


def choose(offers: Sequence[str], accept: str | None) -> str:
    """The offer ``accept`` prefers (the most specific matching range decides an offer's q;
    ties go to the order of ``offers``); the first offer when ``accept`` is absent or empty;
    NotAcceptable (406) when none is acceptable."""
    if accept is None or not accept.strip():
        return offers[0]
    ranges = accept_ranges(accept)
    best: str | None = None
    best_q = 0.0
    for offer in offers:
        wildcard = offer.partition("/")[0] + "/*"
        q = -1.0
        specificity = -1
        for media, rq in ranges:
            if media == offer:
                s = 2
            elif media == wildcard:
                s = 1
            elif media == "*/*":
                s = 0
            else:
                continue
            if s > specificity or (s == specificity and rq > q):
                specificity, q = s, rq
        if q > best_q:
            best, best_q = offer, q
    if best is None:
        raise NotAcceptable(
            f"none of the answer types is acceptable ({accept}): "
            f"the answer is {', '.join(offers[:3])}"
        )
    return best
