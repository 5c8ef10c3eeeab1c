"""A stand-in for gateway.loadgen.report until the displays are merged: the same three
functions, minimal. (To be deleted at integration, with the fallback in cli._displays.)"""

from __future__ import annotations

import json
from typing import TextIO

from gateway.loadgen.stats import Result, Sample


class Progress:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def update(self, sample: Sample) -> None:
        self.stream.write(f"{sample.t:.0f}s acked={sample.acked} failed={sample.failures} "
                          f"rate={sample.rate:.0f}/s p99={sample.p99_ms}ms\n")
        self.stream.flush()

    def close(self) -> None:
        pass


def print_summary(result: Result, stream: TextIO) -> None:
    for k, v in result.as_dict().items():
        if k != "samples":
            stream.write(f"{k}: {v}\n")


def write_json(result: Result, stream: TextIO) -> None:
    json.dump(result.as_dict(), stream)
    stream.write("\n")
