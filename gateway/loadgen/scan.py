"""Counting v3 delivery reports (docs/api.md §1) without a json.loads per report.

The gateway writes one compact JSON object per record, each followed by CRLF, every report
starting with ``{"error_code":``. So the complete reports in a block of decoded body are the LF
count up to its last LF, and its acknowledged records are the count of ``{"error_code":200,``
(and ``202,``: spooled, accepted): two C-speed scans per block. Only failed reports are looked
at one by one, for their code and message.

Another server of the API (Confluent's proxy) may separate its reports differently (a bare LF,
nothing), or order the fields another way. When the fast scan does not account for a block
(a report not starting with ``{"error_code":``, or 64 KiB without a LF), the scanner switches to
a general reader of concatenated JSON (``json.JSONDecoder.raw_decode``) for the rest of the
response, which re-emits each report in the fast form, so what it returns always reads the same.
"""

from __future__ import annotations

import json
import re

LF = b"\n"
REPORT = b'{"error_code":'
OK = b'{"error_code":200,'
SPOOLED = b'{"error_code":202,'
MAX_UNSPLIT = 64 * 1024  # this many bytes without a LF: the reports are not LF-separated
MAX_PARTIAL = 4 * 1024 * 1024  # one report longer than this: the answer is not reports
_CODE = re.compile(rb'\{"error_code":(-?\d+)')
_WS = " \t\r\n"


class ReportFormatError(Exception):
    """The answer is not a sequence of JSON report objects."""


def count_reports(
    seg: bytes, counts: tuple[int, int] | None = None
) -> tuple[int, int, dict[str, int] | None]:
    """(reports, acknowledged, failed by code or None) of a block of whole reports in the
    fast form: each ``{"error_code":N,...}`` followed by LF. ``counts``: the block's LF and
    ``{"error_code":200,`` counts when already known (``ReportScanner.counts``)."""
    n, ok = counts if counts is not None else (seg.count(LF), seg.count(OK))
    if ok == n:
        return n, ok, None
    ok += seg.count(SPOOLED)
    if ok == n:
        return n, ok, None
    failed: dict[str, int] = {}
    for code in _CODE.findall(seg):
        if code != b"200" and code != b"202":
            key = code.decode()
            failed[key] = failed.get(key, 0) + 1
    missing = n - ok - sum(failed.values())
    if missing > 0:  # a report without an integer error_code
        failed["invalid"] = failed.get("invalid", 0) + missing
    return n, ok, failed


def failure_lines(seg: bytes, limit: int) -> list[str]:
    """Up to ``limit`` failed reports of a block, verbatim (for the run's error list)."""
    out: list[str] = []
    for line in seg.split(LF):
        line = line.strip()
        if line and not line.startswith(OK) and not line.startswith(SPOOLED):
            out.append(line[:300].decode("utf-8", "replace"))
            if len(out) >= limit:
                break
    return out


def nth_report_end(seg: bytes, n: int) -> int:
    """The offset just after the ``n``-th report of a block in the fast form."""
    pos = 0
    for _ in range(n):
        pos = seg.index(LF, pos) + 1
    return pos


class ReportScanner:
    """Turns the decoded body of one v3 produce answer, fed in any pieces, into blocks of whole
    reports in the fast form (see the module's doc)."""

    def __init__(self) -> None:
        self._tail = b""
        self._general = False
        #: (reports, ``{"error_code":200,`` prefixes) of the block feed() or finish() returned
        self.counts = (0, 0)

    @property
    def partial(self) -> bytes:
        """What is held of a report not yet complete."""
        return self._tail

    def feed(self, data: bytes) -> bytes:
        """The whole reports completed by ``data`` (b"" if none), in the fast form."""
        if self._general:
            return self._feed_general(data)
        if self._tail:
            data = self._tail + data
        cut = data.rfind(LF) + 1
        if not cut:
            # No LF yet: either a report still coming, or reports not separated by LFs (then a
            # whole object is already followed by something else than its LF).
            text = data.lstrip().decode("utf-8", "surrogateescape")
            end = _object_end(text, 0) if text[:1] == "{" else -1
            if len(data) > MAX_UNSPLIT or text[:1] not in ("", "{") or (
                end >= 0 and text[end:].strip(" \t\r")
            ):
                self._general = True
                self._tail = b""
                return self._feed_general(data)
            self._tail = data
            return b""
        seg = data[:cut] if cut != len(data) else data
        n = seg.count(LF)
        ok = seg.count(OK)  # all of them, mostly: then the block is in the fast form
        if ok != n and (seg.count(REPORT) != n or not seg.lstrip().startswith(REPORT)):
            self._tail = b""
            self._general = True
            return self._feed_general(data)
        self._tail = data[cut:] if cut != len(data) else b""
        self.counts = (n, ok)
        return seg

    def finish(self) -> bytes:
        """At the end of the answer: the reports still held (a last one without its LF)."""
        if not self._tail.strip():
            self._tail = b""
            self.counts = (0, 0)
            return b""
        self._general = True
        seg = self._feed_general(b"")
        if self._tail.strip():
            raise ReportFormatError(f"the answer ends inside a report: {self._tail[:200]!r}")
        return seg

    def _feed_general(self, data: bytes) -> bytes:
        # surrogateescape: a UTF-8 sequence cut at the end of ``data`` survives the round trip
        # into the tail.
        text = (self._tail + data).decode("utf-8", "surrogateescape")
        self._tail = b""
        out = []
        pos = 0
        end = len(text)
        while True:
            while pos < end and text[pos] in _WS:
                pos += 1
            if pos >= end:
                break
            if text[pos] != "{":
                raise ReportFormatError(f"a report is not a JSON object: {text[pos:pos + 80]!r}")
            stop = _object_end(text, pos)
            if stop < 0:
                break  # incomplete: wait for more
            try:
                obj = json.loads(text[pos:stop])
            except ValueError as exc:
                raise ReportFormatError(f"a report is not JSON: {exc}") from None
            out.append(_fast_form(obj))
            pos = stop
        rest = text[pos:].encode("utf-8", "surrogateescape")
        if len(rest) > MAX_PARTIAL:
            raise ReportFormatError("a report longer than 4 MiB")
        self._tail = rest
        seg = b"".join(out)
        self.counts = (len(out), seg.count(OK))
        return seg


_SPECIAL = re.compile(r'[{}"\\]')


def _object_end(text: str, pos: int) -> int:
    """The end of the JSON object starting at ``pos`` (braces counted outside strings), or -1
    when the text ends first."""
    depth = 0
    in_string = False
    i = pos
    search = _SPECIAL.search
    while True:
        m = search(text, i)
        if m is None:
            return -1
        c = m.group()
        i = m.end()
        if in_string:
            if c == "\\":
                i += 1  # the escaped character, whatever it is
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i


def _fast_form(obj: object) -> bytes:
    if not isinstance(obj, dict):
        raise ReportFormatError(f"a report is not a JSON object: {str(obj)[:200]}")
    code = obj.get("error_code")
    if not isinstance(code, int) or isinstance(code, bool):
        code = '"invalid"'  # counted under "invalid" (count_reports)
    rest = {k: v for k, v in obj.items() if k != "error_code"}
    return b'{"error_code":%s,"report":%s}\n' % (
        str(code).encode(), json.dumps(rest, separators=(",", ":"), ensure_ascii=True).encode()
    )
