# ProduceSession and hand_over: the v3 produce stream's lifecycle in C (issue 13).
#
# gateway/produce/session.py describes the stream (its states, flow control, the contract of
# docs/api.md §1) and re-exports the class; this is its code. It runs for every v3 request:
# one body piece, one flush of reports, one end. In Python it was about two fifths of the
# event loop's instructions per one-record request, most of them attribute lookups: here the
# session's own fields are C fields and its StreamCore (stream.pxi) is reached at C level
# (head, tail, pending, ok, take_ready, close...). What it still asks of Python objects is
# theirs to answer: the connection (ReportStream), the KafkaProducer, the metrics, the log.
#
# The class is not final: a test subclasses it to make its flush raise (the producer's
# listener loop must survive that). flush_reports and on_internal_error are cpdef so that an
# override is still honoured when the session calls them itself; for the class itself the
# override check is one type-flag test.

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

cdef enum:
    # SessionState's values (gateway/produce/session.py; checked when the first session is
    # made): the state is a C int here, its enum member only for Python readers.
    SS_READING = 0
    SS_DRAINING = 1
    SS_SHUTTING_DOWN = 2
    SS_ORPHANED = 3
    SS_ENDED = 4
    _SS_COUNT = 5

# What the session needs from Python modules that import this one (gateway.produce imports
# gateway._speedups): taken on the first session's construction, not at module init.
cdef bint _ss_bound = False
cdef int _ss_moves[5]                  # session._MOVES: legal moves as bitmasks, by state left
cdef tuple _ss_states = None           # SessionState's members, by value
cdef object _ss_report_prefix = None   # session.report_prefix (cached per topic)
cdef object _ss_error_report = None    # reports.error_report
cdef object _ss_GatewayBug = None
cdef object _ss_log = None             # session.log ("gateway.produce")
cdef object _ss_get_running_loop = None
cdef str _ss_shutdown_message = None
cdef str _ss_ended_message = None


cdef int _ss_bind() except -1:
    global _ss_bound, _ss_states, _ss_report_prefix, _ss_error_report, _ss_GatewayBug, _ss_log
    global _ss_get_running_loop, _ss_shutdown_message, _ss_ended_message
    import asyncio
    from gateway.errors import GatewayBug
    from gateway.produce import session as m
    from gateway.produce.reports import error_report
    cdef tuple states = tuple(m.SessionState)
    cdef int k
    names = ("READING", "DRAINING", "SHUTTING_DOWN", "ORPHANED", "ENDED")
    if len(states) != _SS_COUNT or len(m._MOVES) != _SS_COUNT:
        raise ImportError("gateway.produce.session.SessionState does not match ext/session.pxi")
    for k in range(_SS_COUNT):
        if int(states[k]) != k or states[k].name != names[k]:
            raise ImportError("gateway.produce.session.SessionState does not match "
                              "ext/session.pxi")
        _ss_moves[k] = m._MOVES[k]
    _ss_states = states
    _ss_report_prefix = m.report_prefix
    _ss_error_report = error_report
    _ss_GatewayBug = GatewayBug
    _ss_log = m.log
    _ss_get_running_loop = asyncio.get_running_loop
    _ss_shutdown_message = m.SHUTDOWN_MESSAGE
    _ss_ended_message = m.ENDED_MESSAGE
    _ss_bound = True
    return 0


cdef inline double _ss_now() noexcept:
    # time.monotonic() without the call: CPython's is CLOCK_MONOTONIC on Linux too.
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef Py_ssize_t _hand_over(StreamCore core, object producer, list items, Py_ssize_t i,
                           object rates, object principal) except -1:
    # hand_over (below) for C callers; the common case (no spool, Kafka up, the same producer,
    # no rate limits) is three attribute reads and the core's push.
    cdef object spooler = producer.spooler
    cdef int64_t used_records, used_bytes
    if spooler is not None:
        # With the disk spool (gateway.produce.edge), records go there while Kafka is judged
        # unreachable, or while it holds records of their topic; otherwise to librdkafka,
        # which keeps them until Kafka takes them (no message timeout with the spool on).
        if spooler.should_spool(core.topic_name):
            if rates is None:
                return spooler.spool_items(core, items, i)
            allow_records, allow_bytes = rates.allowance(principal)
            used_records = core.used_records
            used_bytes = core.used_bytes
            i = spooler.spool_items(core, items, i, allow_records, allow_bytes)
            rates.charge(principal, core.used_records - used_records,
                         core.used_bytes - used_bytes)
            return i
    else:
        down = producer.health.down
        if down is not None:
            return core.refuse(items, i, 50003, f"Kafka is unreachable ({down}): this record "
                               "was not handed to Kafka; resend it")
    current = producer.current
    if current is not core._producer:
        core.rebind(current)
    if rates is None:
        return core._push(items, i, -1, -1)
    allow_records, allow_bytes = rates.allowance(principal)
    used_records = core.used_records
    used_bytes = core.used_bytes
    i = core._push(items, i, allow_records, allow_bytes)
    rates.charge(principal, core.used_records - used_records, core.used_bytes - used_bytes)
    return i


def hand_over(StreamCore core not None, producer, list items not None, Py_ssize_t i, rates,
              principal):
    # See gateway/_speedups.pyi (and gateway/produce/core.py, which re-exports it).
    return _hand_over(core, producer, items, i, rates, principal)


cdef class ProduceSession:
    # Fields: 10,000 open streams each hold one (issue 4's memory row).
    cdef object _stream              # the connection (ReportStream)
    cdef int _st                     # SS_*: moved only by _set_state (or its checked cases)
    cdef object _client              # who the stream is from, for the log
    # Limits (gateway.limits): the rate buckets (None: off), who they count this stream for,
    # the body size limit (0: none) and the stream's maximum duration (0: none).
    cdef object _rates
    cdef object _principal
    cdef Py_ssize_t _max_body
    cdef Py_ssize_t _body_bytes
    cdef double _max_duration
    cdef object _timer               # asyncio.TimerHandle of the maximum duration, or None
    cdef object _producer            # KafkaProducer
    cdef object _splitter
    cdef JsonSplitter _json          # the splitter when it is the compiled one (C calls)
    cdef str _topic
    cdef object _stats               # ProduceStats
    cdef Py_ssize_t _max_feed
    cdef object _tc                  # the topic's TopicCounters
    cdef StreamCore _core
    cdef list _backlog               # parsed records waiting for room, from _backlog_pos
    cdef Py_ssize_t _backlog_pos
    cdef int _paused                 # the reasons this session asked its connection to pause
    cdef Py_ssize_t _dropped         # parsed records never handed to Kafka
    # The access log's status: 200 for a stream read to its end; a stream cut short logs the
    # status its last report stands for (400 garbage or broken framing, 408, 413, 431, 503
    # shutdown, 500 internal error).
    cdef int _final_status
    cdef Py_ssize_t _folded_ok       # core.ok already added to tc.delivered
    # Report latency, sampled: the last record handed to Kafka from one body piece, from its
    # produce to its report being written; one sample outstanding per stream (-1: none).
    cdef object _latency
    cdef int64_t _sample_seq
    cdef double _sample_t
    cdef object __weakref__

    def __init__(self, stream, producer, splitter, *, str cluster_id not None,
                 str topic not None, int32_t partitions, Py_ssize_t max_in_flight, stats,
                 Py_ssize_t max_feed=64 * 1024, rates=None, principal="-",
                 Py_ssize_t max_body_bytes=0, double max_duration=0.0, client="-"):
        if not _ss_bound:
            _ss_bind()
        self._stream = stream
        self._st = SS_READING
        self._client = client
        self._rates = rates if rates is not None and rates.enabled else None
        self._principal = principal
        self._max_body = max_body_bytes
        self._body_bytes = 0
        self._max_duration = max_duration
        self._timer = None
        if max_duration > 0:
            self._timer = _ss_get_running_loop().call_later(max_duration, self._on_max_duration)
        self._producer = producer
        self._splitter = splitter
        self._json = <JsonSplitter>splitter if type(splitter) is JsonSplitter else None
        self._topic = topic
        self._stats = stats
        self._max_feed = max_feed
        # Metrics (gateway.stats): folded at batch boundaries, never counted per record.
        tc = stats.topics[topic]
        self._tc = tc
        self._core = StreamCore(producer.router, producer.current, topic, partitions,
                                max_in_flight, _ss_report_prefix(cluster_id, topic), self,
                                producer.error_of, tc.fail, _ss_error_report)
        self._backlog = None
        self._backlog_pos = 0
        self._paused = 0
        self._dropped = 0
        self._final_status = 200
        stats.streams += 1
        tc.streams += 1
        self._folded_ok = 0
        self._latency = stats.latency["v3_stream"]
        self._sample_seq = -1
        self._sample_t = 0.0
        stats.live_streams.add(self)

    # -- state --------------------------------------------------------------------------
    @property
    def state(self):
        return _ss_states[self._st]

    cdef int _set_state(self, int state) except -1:
        if not (_ss_moves[self._st] >> state) & 1:
            raise _ss_GatewayBug(f"illegal stream state move {_ss_states[self._st].name} -> "
                                 f"{_ss_states[state].name}")
        self._st = state
        return 0

    def describe(self):
        return f"v3 stream to topic {self._topic} from {self._client}"

    @property
    def records_ok(self):
        return self._core.ok

    @property
    def records_failed(self):
        return self._core.failed + self._dropped

    # -- input ------------------------------------------------------------------------
    @property
    def accepting(self):
        return self._backlog is None and self._st == SS_READING

    cdef inline list _split(self, data):
        if self._json is not None:
            return self._json.feed_items(data)
        return self._splitter.feed(data)

    def on_body(self, data):
        cdef Py_ssize_t n, done, room
        if self._st != SS_READING:
            return
        n = len(data)
        self._tc.bytes_in += n
        done = self._body_bytes
        self._body_bytes = done + n
        if self._max_body and n > self._max_body - done:
            # Over the request size limit: the records complete within it go on; the rest of
            # the body is not read and gets one last 413 report (docs/api.md §1).
            room = self._max_body - done
            if room > 0:
                self._feed(data[:room])
            self._cut_input(
                413,
                f"the request body is over the {self._max_body}-byte limit "
                "(api.v3.produce.request.size.limit.max.bytes): reading stopped at byte "
                f"{self._max_body}; the records after this report were not read", 0, 0)
            return
        if n <= self._max_feed:
            self._handle(self._split(data), 0)  # (_feed's common case)
        else:
            self._feed(data)

    cdef int _feed(self, data) except -1:
        cdef Py_ssize_t step = self._max_feed
        cdef Py_ssize_t n = len(data)
        cdef Py_ssize_t pos = 0
        cdef list rest
        if n <= step:
            self._handle(self._split(data), 0)
            return 0
        # Feed bounded slices and stop at the first backlog: it then holds at most the records
        # of what this one call delivered (bounded by the connection's read buffer).
        while pos < n and self._backlog is None and self._st == SS_READING:
            self._handle(self._split(data[pos : pos + step]), 0)
            pos += step
        if pos < n and self._st == SS_READING:
            # A backlog formed mid-body; the rest is kept by feeding it now (the splitter copies
            # only the trailing partial record) and parking its records behind the backlog.
            rest = self._split(data[pos:])
            if rest:
                self._park(rest)
        return 0

    cdef int _park(self, list items) except -1:
        # Records parsed while others wait for room: behind them, in order.
        assert self._backlog is not None
        self._backlog = self._backlog[self._backlog_pos:] + items
        self._backlog_pos = 0
        return 0

    def on_body_end(self):
        cdef list items
        cdef StreamCore core
        cdef uint64_t n
        if self._st != SS_READING:
            return
        if self._json is not None:
            items = self._json.finish_items()
        else:
            items = self._splitter.finish()
        if items:
            if self._backlog is not None:
                self._park(items)
            else:
                self._handle(items, 0)
        if self._st == SS_READING:
            self._st = SS_DRAINING  # (READING -> DRAINING: legal)
        # Records still with Kafka and none waiting for room: the last report's flush ends the
        # stream. Otherwise (reports ready, nothing left, a backlog) flush now.
        core = self._core
        n = core.tail - core.head
        if self._backlog is not None or not (0 < n and n == <uint64_t>core.pending):
            self.flush_reports()

    cdef int _handle(self, list items, Py_ssize_t i) except -1:
        cdef StreamCore core = self._core
        cdef uint64_t tail0
        cdef Py_ssize_t failed0, produced0
        cdef int reason
        if core.fatal_seen:
            return 0
        producer = self._producer
        tail0 = core.tail
        failed0 = core.failed
        produced0 = core.produced
        i = _hand_over(core, producer, items, i, self._rates, self._principal)
        if i < len(items):
            reason = core.stop_reason
            self._backlog = items
            self._backlog_pos = i
            if not self._paused & reason:
                self._paused |= reason
                self._stream.pause_reading(reason)
            if reason == SC_STOP_KAFKA_QUEUE:
                producer.wait_for_space(self)
        elif self._backlog is not None:
            self._backlog = None
            self._backlog_pos = 0
        if core.fatal_seen and self._st == SS_READING:
            # The splitter cannot find the next record: read no more of this body.
            self._set_state(SS_DRAINING)
            self._final_status = 400
            self._stream.stop_reading()
        # Every slot filed in this call is a record handed to Kafka or a failure report (no
        # delivery report is served inside push).
        self._tc.accepted += <Py_ssize_t>(core.tail - tail0) - (core.failed - failed0)
        if core.produced != produced0:
            if self._sample_seq < 0:
                self._sample_seq = <int64_t>core.tail - 1
                self._sample_t = _ss_now()
            producer.kick()
        # While reading, a flush has work only when this call filed a report (a failure, a 429,
        # a refusal): a record handed over has its report come through the router's flush.
        if self._st != SS_READING or core.tail - core.head != <uint64_t>core.pending:
            self.flush_reports()
        return 0

    cdef int _retry_backlog(self) except -1:
        cdef int reasons
        if self._backlog is None:
            return 0
        if self._st == SS_SHUTTING_DOWN:
            self._fail_backlog(50003, _ss_shutdown_message)
            return 0
        self._handle(self._backlog, self._backlog_pos)
        if self._backlog is None and self._paused:
            reasons = self._paused
            self._paused = 0
            if reasons & SC_STOP_IN_FLIGHT:
                self._stream.resume_reading(SC_STOP_IN_FLIGHT)
            if reasons & SC_STOP_KAFKA_QUEUE:
                self._stream.resume_reading(SC_STOP_KAFKA_QUEUE)
        return 0

    cdef int _fail_backlog(self, int code, message) except -1:
        cdef list backlog = self._backlog
        cdef StreamCore core = self._core
        cdef Py_ssize_t k
        self._backlog = None
        if backlog is None:
            return 0
        for k in range(len(backlog) - self._backlog_pos):
            # Reading has ended, so the window has room once earlier reports drain; the
            # in-flight bound still holds because nothing new is read (push_failure's force).
            core._file_failure(code, message)
        return 0

    def on_body_error(self, error):
        if isinstance(error, _ss_GatewayBug):
            self.on_internal_error(error)
            return
        self._cut_input(
            error.error_code,
            f"{error.message}: reading stopped at byte {self._body_bytes} of the records sent; "
            "the records after this report were not read, send them again",
            error.status, 50003)

    cdef int _cut_input(self, int code, message, int status, int backlog_code) except -1:
        # Read no more of this body: records waiting for room get a ``backlog_code`` report
        # each (0: ``code``), then one last report (``code``) stands for the rest of the body,
        # which is not read. The access log carries ``status`` (0: ``code``) as the stream's
        # status: the HTTP status of that last report's code. Every reason a stream stops
        # being read before its end comes here (over the body limit, the maximum duration,
        # every cut of the connection's through on_body_error), except two that end it their
        # own way: garbage between records (the splitter's fatal report) and a fault of ours
        # (on_internal_error).
        if self._st != SS_READING:
            return 0
        self._end_input(SS_DRAINING, backlog_code or code, _ss_ended_message)
        self._final_status = status or code
        self._core._file_failure(code, message)
        self.flush_reports()
        return 0

    cdef int _end_input(self, int state, int backlog_code, message) except -1:
        # Read no more; parsed records still waiting for room get a failure report each.
        cdef int was = self._st
        self._set_state(state)
        if was == SS_READING:
            self._stream.stop_reading()
        self._producer.cancel_wait(self)
        if self._backlog is not None:
            self._fail_backlog(backlog_code, message)
        return 0

    def _on_max_duration(self):
        self._timer = None
        ms = round(<object>self._max_duration * 1000)  # (Python's round: an int)
        self._cut_input(
            408,
            f"the stream was open for its maximum of {ms} ms (streaming.connection.max.duration.ms): "
            "reading stopped here; the records after this report were not read, send them on a "
            "new connection", 0, 0)

    # -- delivery reports -------------------------------------------------------------
    cpdef flush_reports(self):
        cdef int state = self._st
        cdef StreamCore core
        cdef bytes data
        cdef bytes last
        cdef Py_ssize_t ok
        if state == SS_ENDED:
            return
        core = self._core
        if state != SS_SHUTTING_DOWN and state != SS_ORPHANED and self._stream.write_blocked:
            return
        data = core._take_ready()
        last = b""  # the stream's last output: it goes with the stream's end (_finish)
        if data and state != SS_ORPHANED:
            if state != SS_READING and self._backlog is None and core.tail == core.head:
                last = data
            else:
                self._stream.write_body(data)
        ok = core.ok
        if ok != self._folded_ok:
            self._tc.delivered += ok - self._folded_ok
            self._folded_ok = ok
        if 0 <= self._sample_seq and <uint64_t>self._sample_seq < core.head:
            if state != SS_ORPHANED:
                self._latency.observe(_ss_now() - self._sample_t)
            self._sample_seq = -1
        if self._backlog is not None:
            if self._paused & SC_STOP_IN_FLIGHT and core.tail - core.head < <uint64_t>core.capacity:
                self._retry_backlog()
                return
        else:  # the stream ends with its last report (the state may have moved meanwhile)
            state = self._st
            if state != SS_READING and state != SS_ENDED and core.tail == core.head:
                self._finish(state == SS_ORPHANED, last)
                return
        if last:  # (not ended after all)
            self._stream.write_body(last)

    def on_writable(self):
        # The socket's buffer drained below its low-water mark.
        self.flush_reports()

    def on_queue_space(self):
        if self._paused & SC_STOP_KAFKA_QUEUE:
            self._retry_backlog()

    cdef int _finish(self, bint gone, bytes last) except -1:
        # The last report is out (or, with the client gone, the last outcome is known).
        cdef StreamCore core = self._core
        cdef Py_ssize_t ok, failed, spooled
        if self._st == SS_DRAINING:
            self._st = SS_ENDED  # (the common, legal, move: _set_state checks the others)
        else:
            self._set_state(SS_ENDED)
        core._close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stats = self._stats
        ok = core.ok
        failed = core.failed + self._dropped  # (records_ok, records_failed)
        stats.records_ok += ok
        stats.records_failed += failed
        stats.live_streams.discard(self)
        if gone:
            if failed:
                _ss_log.warning(
                    "stream to topic %s ended after its client left: %d records delivered, "
                    "%d failed (their reports had no reader)",
                    self._topic,
                    ok,
                    failed,
                )
        else:
            self._stream.end_body(last)
        # The access log line of the stream (gateway.access), once, when its last report is out.
        spooled = core.spooled
        line = f"topic={self._topic} records={ok + failed + spooled} ok={ok} failed={failed}"
        if spooled:
            line += f" spooled={spooled}"
        if gone:
            line += " (client gone)"
        self._stream.log_access(line, self._final_status)
        return 0

    # -- lifecycle --------------------------------------------------------------------
    def on_connection_lost(self):
        cdef Py_ssize_t dropped
        cdef int state = self._st
        if state != SS_READING and state != SS_DRAINING and state != SS_SHUTTING_DOWN:
            return  # (the client was not being written to)
        self._set_state(SS_ORPHANED)
        self._producer.cancel_wait(self)
        if self._backlog is not None:
            dropped = len(self._backlog) - self._backlog_pos
            self._backlog = None
            self._stats.records_dropped_no_client += dropped
            self._tc.dropped += dropped
            self._dropped += dropped
            _ss_log.warning(
                "client gone: %d parsed records of topic %s were never handed to Kafka",
                dropped,
                self._topic,
            )
        self.flush_reports()

    def on_shutdown(self):
        if self._st == SS_READING or self._st == SS_DRAINING:
            self._end_input(SS_SHUTTING_DOWN, 50003, _ss_shutdown_message)
            self.flush_reports()

    cpdef on_internal_error(self, exc):
        cdef int state = self._st
        cdef StreamCore core
        cdef Py_ssize_t n
        cdef bytes out
        if state == SS_ENDED:
            return
        core = self._core
        self._producer.cancel_wait(self)
        core._break()
        out = core._take_ready()
        if self._backlog is not None:
            n = len(self._backlog) - self._backlog_pos
            self._backlog = None
            self._dropped += n
            out += _SC_INTERNAL_REPORT * n
        if state == SS_READING:
            self._dropped += 1  # the last report stands for the unread rest
            out += _ss_error_report(
                50003,
                f"internal error of the gateway: reading stopped at byte {self._body_bytes}; "
                "the records after this report were not read, send them again",
            )
            self._stream.stop_reading()
        self._final_status = 500
        if state != SS_ORPHANED and out:
            self._stream.write_body(out)
        self._finish(state == SS_ORPHANED, b"")

    def in_flight(self):
        cdef Py_ssize_t waiting = 0
        if self._backlog is not None:
            waiting = len(self._backlog) - self._backlog_pos
        return <Py_ssize_t>(self._core.tail - self._core.head) + waiting

    def debug_info(self):
        # State for the SIGUSR1 connection dump.
        return {
            "topic": self._topic,
            "session": _ss_states[self._st].name,
            "session_paused": self._paused,
            "backlog": None if self._backlog is None else len(self._backlog) - self._backlog_pos,
            "reports_pending": len(self._core),
            "core": self._core.debug_info(),
            "ok": self.records_ok,
            "failed": self.records_failed,
        }

    @property
    def core(self):
        return self._core

    @property
    def finished(self):
        return self._st == SS_ENDED
