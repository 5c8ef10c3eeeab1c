"""Benchmarks of the gateway, each runnable as ``python -m bench.<name>``; ``python -m bench``
(``make bench``) runs them all and prints the issue's target table.

- ``stream``: v3 streaming over one chunked connection, CPU per record vs a plain producer
- ``requests``: one record per request (v3 Content-Length, v2), 64 keep-alive connections (wrk)
- ``batches``: v1 / v2 produce with 100 records per request (wrk)
- ``consume``: v1 consume of existing records (wrk)
- ``latency``: report latency of one stream at half the peak rate
- ``memory``: RSS with 10,000 open streams; the cost of a client that never reads
- ``spool``: the disk spool's engine alone: appends under two fsync policies, read-back
- ``edge``: the disk spool in the produce path: spooling and forwarding against the normal path
- ``plot``: the PNG (``--plot FILE.png`` on any of them)

Shared pieces live in ``common`` (processes, /proc sampling, output), ``load`` (the streaming
load: the repository's load generator, gateway.loadgen, called as a library by stream, latency,
edge and memory), ``baseline`` (the plain confluent-kafka loops, in a child process) and ``wrk``
(wrk, the external tool that drives the request rows). They print figures; none of them is a
timed assertion in the test suite.
"""
