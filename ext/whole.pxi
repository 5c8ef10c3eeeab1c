# WholeRequest and V1ProduceRequest: the produce requests answered as a whole, in C (issue 13).
#
# gateway/produce/whole.py and gateway/produce/v1.py describe them (states, the answer's shape,
# docs/api.md) and re-export the classes; this is their code. A v1/v2 request runs it once per
# request (its body, its hand-over, its answer): compiled, its fields are C fields and its
# StreamCore is reached at C level. BatchRequest (gateway/produce/batch.py, v3 records:batch)
# stays a Python subclass of WholeRequest: its _begin and _answer are cpdef hooks, honoured
# when overridden in Python; V1ProduceRequest's are C.

cdef enum:
    # RequestState's values (gateway/produce/whole.py; checked when the first request is made).
    WR_READING = 0
    WR_PRODUCING = 1
    WR_ORPHANED = 2
    WR_DONE = 3
    _WR_COUNT = 4

# What the requests need from Python modules that import this one: taken on the first
# request's construction, not at module init (gateway.produce imports gateway._speedups).
cdef bint _wr_bound = False
cdef int _wr_moves[4]                  # whole._MOVES, by state left
cdef tuple _wr_states = None           # RequestState's members, by value
cdef object _wr_RequestRefused = None
cdef object _wr_error_body = None
cdef object _wr_ProduceStats = None
cdef object _wr_log = None
cdef bytes _wr_json_type = None
cdef bint _v1_bound = False
cdef object _v1_parse_body = None
cdef object _v1_decode_records = None
cdef object _v1_record_error_code = None
cdef object _v1_error_text = None
cdef object _v1_json_str = None
cdef bytes _v1_failed = None
cdef bytes _v1_answer_head = None
cdef bytes _v1_answer_tail = None


cdef int _wr_bind() except -1:
    global _wr_bound, _wr_states, _wr_RequestRefused, _wr_error_body, _wr_ProduceStats
    global _wr_log, _wr_json_type, _ss_GatewayBug
    from gateway.errors import GatewayBug, error_body
    from gateway.produce import whole as m
    from gateway.stats import ProduceStats
    cdef tuple states = tuple(m.RequestState)
    cdef int k
    names = ("READING", "PRODUCING", "ORPHANED", "DONE")
    if len(states) != _WR_COUNT or len(m._MOVES) != _WR_COUNT:
        raise ImportError("gateway.produce.whole.RequestState does not match ext/whole.pxi")
    for k in range(_WR_COUNT):
        if int(states[k]) != k or states[k].name != names[k]:
            raise ImportError("gateway.produce.whole.RequestState does not match ext/whole.pxi")
        _wr_moves[k] = m._MOVES[k]
    _wr_states = states
    _wr_RequestRefused = m.RequestRefused
    _wr_error_body = error_body
    _wr_ProduceStats = ProduceStats
    _wr_log = m.log
    _wr_json_type = m.JSON_TYPE
    _ss_GatewayBug = GatewayBug
    _wr_bound = True
    return 0


cdef int _v1_bind() except -1:
    global _v1_bound, _v1_parse_body, _v1_decode_records, _v1_record_error_code
    global _v1_error_text, _v1_json_str, _v1_failed, _v1_answer_head, _v1_answer_tail
    from gateway.kafka.producer import error_text
    from gateway.produce import v1 as m
    from gateway.produce.reports import json_str
    _v1_parse_body = m.parse_body
    _v1_decode_records = m.decode_records
    _v1_record_error_code = m.record_error_code
    _v1_error_text = error_text
    _v1_json_str = json_str
    _v1_failed = m._FAILED
    _v1_answer_head = m._ANSWER_HEAD
    _v1_answer_tail = m._ANSWER_TAIL
    _v1_bound = True
    return 0


cdef class WholeRequest:
    # Body consumer of one produce request answered as a whole; see gateway/produce/whole.py.
    # A subclass implements _begin (the produce items, or RequestRefused) and _answer (the
    # final status and body, from the core), and may give the core its report format (mode),
    # error mapping (_error_of) and failure entry (_entry).
    cdef object _conn                # Responder
    cdef object _producer            # KafkaProducer
    cdef str _topic
    cdef int32_t _partitions
    cdef object _stats               # ProduceStats
    cdef object _tc                  # the topic's TopicCounters
    cdef object _rates               # RateLimiter, or None: off
    cdef object _principal
    cdef Py_ssize_t _max_bytes
    cdef bytes _content_type
    cdef int _st                     # WR_*
    cdef bytearray _buf
    cdef list _items
    cdef Py_ssize_t _next            # the first item not handed to Kafka yet
    cdef StreamCore _core
    cdef double _t0                  # first hand-over
    cdef readonly str api            # the report-latency histogram's label
    cdef str _noun                   # for the log
    cdef str _too_large              # for the 413 message
    cdef int _mode                   # StreamCore report format
    cdef object __weakref__

    def __init__(self, conn, producer, *, str topic not None, int32_t partitions,
                 Py_ssize_t max_bytes, bytes content_type=None, stats=None, rates=None,
                 principal="-", str api="v1", str noun="records", str too_large="request body",
                 int mode=0):
        if not _wr_bound:
            _wr_bind()
        self._conn = conn
        self._producer = producer
        self._topic = topic
        self._partitions = partitions
        if stats is None:
            stats = _wr_ProduceStats()
        self._stats = stats
        self._tc = stats.topics[topic]
        self._rates = rates if rates is not None and rates.enabled else None
        self._principal = principal
        self._max_bytes = max_bytes
        self._content_type = content_type if content_type is not None else _wr_json_type
        self._st = WR_READING
        self._buf = bytearray()
        self._items = []
        self._next = 0
        self._core = None
        self._t0 = 0.0
        self.api = api
        self._noun = noun
        self._too_large = too_large
        self._mode = mode

    @property
    def state(self):
        return _wr_states[self._st]

    cdef int _set_state(self, int state) except -1:
        if not (_wr_moves[self._st] >> state) & 1:
            raise _ss_GatewayBug(f"illegal {self.api} request state move "
                                 f"{_wr_states[self._st].name} -> {_wr_states[state].name}")
        self._st = state
        return 0

    @property
    def accepting(self):
        return self._st == WR_READING

    def describe(self):
        return f"{self.api} request to topic {self._topic}"

    # -- to implement -------------------------------------------------------------------
    cpdef list _begin(self, bytes body):
        raise NotImplementedError

    cpdef tuple _answer(self, StreamCore core):
        raise NotImplementedError

    def _error_of(self, err):
        # (error_code, message) of a record Kafka (or produce()) refused.
        return self._producer.error_of(err)

    def _entry(self, code, message):
        # A failed record's entry in the answer.
        return _wr_error_body(code, message)

    # -- body ---------------------------------------------------------------------------
    def on_body(self, data):
        cdef Py_ssize_t n
        if self._st != WR_READING:
            return
        n = len(data)
        self._tc.bytes_in += n
        if len(self._buf) + n > self._max_bytes:
            self._refuse(413, 413, f"{self._too_large} is over the {self._max_bytes}-byte limit",
                         True)
            return
        self._buf += data

    def on_body_error(self, error):
        # The connection stopped reading the body before its end (broken framing, the client
        # half-closed, idle, shutdown): nothing was produced; ``error`` is the answer.
        if self._st == WR_READING:
            self._buf = bytearray()
            self._refuse(error.status, error.error_code, error.message, True)

    def on_body_end(self):
        cdef bytes body
        cdef list items
        if self._st != WR_READING:
            return
        body = bytes(self._buf)
        self._buf = bytearray()
        try:
            items = self._begin(body)
        except _wr_RequestRefused as exc:
            self._refuse(exc.status, exc.error_code, exc.message, False)
            return
        self._items = items
        producer = self._producer
        # (new_core, written out: this runs for every request)
        self._core = StreamCore(
            producer.router, producer.current, self._topic, self._partitions,
            max(1, len(items)), b"", self, self._error_of, self._tc.fail, self._entry,
            self._mode)
        self._st = WR_PRODUCING  # (READING -> PRODUCING: checked above)
        self._t0 = _ss_now()
        self._stats.live_requests.add(self)
        self._hand_over()

    # -- producing ----------------------------------------------------------------------
    cdef int _hand_over(self) except -1:
        cdef StreamCore core = self._core
        cdef list items = self._items
        cdef Py_ssize_t produced0 = core.produced
        cdef Py_ssize_t i
        producer = self._producer
        i = _hand_over(core, producer, items, self._next, self._rates, self._principal)
        self._tc.accepted += core.produced - produced0
        if i < len(items):
            # librdkafka's queue is full: go on when the producer says there is room.
            self._next = i
            producer.wait_for_space(self)
            return 0
        # Every record is with librdkafka (which copied the bytes): drop our references.
        self._items = []
        self._next = 0
        producer.kick()
        if not core.pending:
            self._maybe_answer()
        return 0

    def on_queue_space(self):
        if self._st == WR_PRODUCING:
            self._hand_over()

    def flush_reports(self):
        cdef StreamCore core = self._core
        if core is None:
            return
        core.dirty = False  # (take_ready resets it; the answer is taken only at the end)
        if self._st == WR_PRODUCING:
            self._maybe_answer()
        elif self._st == WR_ORPHANED and not core.pending:
            self._settle()

    cdef int _maybe_answer(self) except -1:
        cdef StreamCore core = self._core
        if core is None or core.pending or self._next < len(self._items):
            return 0
        self._settle()
        status, body = self._answer(core)
        core._close()
        # The core holds this request (its error callbacks are our bound methods): let go of
        # it, so the request and its core go away with the connection's reference instead of
        # waiting, a cycle, for the garbage collector.
        self._core = None
        self._stats.latency[self.api].observe(_ss_now() - self._t0)
        # (a request whose records went to the disk spool says how many in its access line)
        self._conn.respond(status, body, content_type=self._content_type,
                           detail=f"spooled={core.spooled}" if core.spooled else "")
        return 0

    cdef int _settle(self) except -1:
        # Every record has its outcome: count the delivered ones, leave the live set.
        cdef StreamCore core = self._core
        cdef bint gone = self._st == WR_ORPHANED
        if gone or self._st == WR_PRODUCING:
            self._st = WR_DONE  # (both legal moves)
        else:
            self._set_state(WR_DONE)
        self._stats.live_requests.discard(self)
        self._tc.delivered += core.ok
        if gone:
            if core.failed:
                _wr_log.warning("client gone: %d of its %s failed", core.failed, self._noun)
            core._close()
            self._core = None
        return 0

    cdef int _refuse(self, int status, int error_code, message, bint close) except -1:
        self._set_state(WR_DONE)
        self._conn.respond(status, _wr_error_body(error_code, message),
                           content_type=self._content_type, close=close)
        return 0

    def in_flight(self):
        # Records of this request not yet with their outcome (the in-flight gauge).
        return (0 if self._core is None else self._core.pending) + len(self._items) - self._next

    def debug_info(self):
        # State for the SIGUSR1 connection dump.
        return {
            "request": self.api,
            "topic": self._topic,
            "request_state": _wr_states[self._st].name,
            "body_bytes": len(self._buf),
            "in_flight": self.in_flight(),
        }

    # -- lifecycle ----------------------------------------------------------------------
    def on_connection_lost(self):
        cdef Py_ssize_t left
        cdef StreamCore core
        self._producer.cancel_wait(self)
        state = self._st
        if state == WR_READING:
            self._set_state(WR_DONE)
            return
        if state != WR_PRODUCING:
            return
        left = len(self._items) - self._next
        if left:
            _wr_log.warning("client gone: %d %s were never handed to Kafka", left, self._noun)
            self._tc.dropped += left
            self._items = []
            self._next = 0
        core = self._core
        assert core is not None
        self._set_state(WR_ORPHANED)
        if not core.pending:
            self._settle()

    def on_shutdown(self):
        # Still reading the body: refuse. Records already with Kafka finish and are answered.
        if self._st == WR_READING:
            self._refuse(503, 50003, "the gateway is shutting down", True)

    def on_internal_error(self, exc):
        # Reporting to this request failed (the producer logged why): every record without an
        # outcome gets the internal-error entry (50003), and the answer goes out.
        cdef StreamCore core = self._core
        cdef Py_ssize_t k
        if core is None or (self._st != WR_PRODUCING and self._st != WR_ORPHANED):
            return
        self._producer.cancel_wait(self)
        core._break()
        for k in range(len(self._items) - self._next):
            core._file_failure(50003, "internal error of the gateway before this record was "
                               "handed to Kafka; resend it")
        self._items = []
        self._next = 0
        if self._st == WR_ORPHANED:
            self._settle()
        else:
            self._maybe_answer()


@cython.final
cdef class V1ProduceRequest(WholeRequest):
    # Body consumer of one v1/v2 produce request (gateway/produce/v1.py): the records go
    # through a StreamCore in the v1 or v2 offsets format, produced from C, their delivery
    # reports completed in C, and the offsets entries formatted in C, in request order, when
    # the last report is in.
    cdef object _url_partition
    cdef str _embedded
    cdef str _first_refusal

    def __init__(self, conn, producer, *, str topic not None, int32_t partitions, url_partition,
                 int version, str embedded not None, bytes content_type not None,
                 Py_ssize_t max_bytes, stats=None):
        if not _v1_bound:
            _v1_bind()
        WholeRequest.__init__(
            self, conn, producer, topic=topic, partitions=partitions, max_bytes=max_bytes,
            content_type=content_type, stats=stats, api="v2" if version == 2 else "v1",
            mode=FORMAT_V2 if version == 2 else FORMAT_V1)
        self._url_partition = url_partition
        self._embedded = embedded
        self._first_refusal = ""

    cpdef list _begin(self, bytes body):
        return _v1_decode_records(_v1_parse_body(body), self._embedded, self._partitions,
                                  self._url_partition)

    def _error_of(self, err):
        # Produce refusals and failed deliveries alike (the core calls it; rare).
        text = _v1_error_text(err)
        if not self._first_refusal:
            self._first_refusal = text
        return _v1_record_error_code(self._producer.error_code(err)), text

    def _entry(self, code, message):
        return _v1_failed % (code, _v1_json_str(message)) + b","

    cpdef tuple _answer(self, StreamCore core):
        cdef bytes entries = core._take_ready()
        if not core.produced and not core.spooled:
            # Not one record reached Kafka (nor the disk spool): the request as a whole failed
            # (Confluent's 50001).
            why = self._first_refusal or f"Kafka is unreachable ({self._producer.health.down})"
            return 500, _wr_error_body(50001, f"the records could not be handed to Kafka: {why}")
        # (each entry ends with a comma: the last one's goes; wraparound is off, no [:-1])
        return 200, _v1_answer_head + entries[:max(0, len(entries) - 1)] + _v1_answer_tail
