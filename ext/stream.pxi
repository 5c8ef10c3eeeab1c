# StreamCore and ReportRouter: the per-record half of a v3 produce stream in C (issue 4).
#
# A v3 stream's records go from the splitter's items to librdkafka, and their delivery reports
# come back to the client in the order sent. Python (gateway/produce/session.py) keeps the
# stream's lifecycle: pausing, backlog, shutdown, logging. Everything done once per record is
# here, with no Python call per record on the delivery side:
#
# - StreamCore.push(items, i) hands records to librdkafka (RdProducer.produce_c) and files each
#   one in a ring of C slots indexed by its sequence number. The ring is the per-connection
#   in-flight window: it stops at `capacity` and grows by doubling from a few slots, so an idle
#   stream costs little (10,000 open streams). Records that fail before Kafka (bad record,
#   partition out of range, a refused produce) get their failure report in their slot at once.
# - Each produced record's msg_opaque is (sink id << 32) | (sequence number & 0xFFFFFFFF).
#   ReportRouter.dispatch() walks RdProducer's batch of delivery reports (C arrays filled by
#   librdkafka's callback) and completes the slots of the sinks the ids name: a StreamCore's in C,
#   a Python sink (v1/v2 and records:batch requests) through its callable, once per record.
# - StreamCore.take_ready() formats the completed prefix of the ring into one bytes object: the
#   exact report bytes of docs/api.md §1, in order.
#
# Everything here runs on the event loop thread: no lock, no GIL release.

from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t

cdef enum:
    _SC_FREE = 0
    _SC_PENDING = 1     # with librdkafka, report not in yet
    _SC_OK = 2          # delivered: partition, offset, timestamp filled
    _SC_FAILED = 3      # `report` holds the failure report's bytes
    # The ring is allocated with the first record (an idle stream has none), starts with a few
    # slots, doubles as needed, and is given back when it empties after having grown past
    # _SC_KEEP_SLOTS.
    _SC_INITIAL_SLOTS = 4
    _SC_KEEP_SLOTS = 1024
    # Why push() stopped before the end of its items (the session's pause reasons).
    SC_STOP_NONE = 0
    SC_STOP_IN_FLIGHT = 1 << 4
    SC_STOP_KAFKA_QUEUE = 1 << 5
    # Report formats (StreamCore mode): the v3 stream report followed by CRLF, or a v1/v2
    # offsets entry followed by a comma (the caller drops the last one).
    FORMAT_V3 = 0
    FORMAT_V1 = 1
    FORMAT_V2 = 2
    # The shared output buffer is freed after a take_ready() that needed more than this.
    _SC_KEEP_OUT = 1 << 20

cdef uint64_t _SC_SEQ_MASK = 0xFFFFFFFF


cdef struct _Slot:
    int64_t offset
    int64_t timestamp
    int64_t key_size
    int64_t value_size
    PyObject* report    # owned reference (state _SC_FAILED)
    int32_t partition
    uint8_t state
    uint8_t key_type    # 0: the record had no key field; 1 BINARY, 2 JSON, 3 STRING
    uint8_t value_type


# The report bytes are assembled in one buffer shared by every stream (one event loop thread).
cdef char* _sc_out = NULL
cdef Py_ssize_t _sc_out_cap = 0


cdef int _sc_reserve(Py_ssize_t need) except -1:
    global _sc_out, _sc_out_cap
    cdef Py_ssize_t cap
    cdef char* grown
    if need <= _sc_out_cap:
        return 0
    cap = _sc_out_cap * 2
    if cap < 65536:
        cap = 65536
    if cap < need:
        cap = need
    grown = <char*>realloc(_sc_out, <size_t>cap)
    if grown == NULL:
        raise MemoryError()
    _sc_out = grown
    _sc_out_cap = cap
    return 0


cdef inline Py_ssize_t _sc_int(char* o, int64_t v) noexcept:
    # Decimal digits of v at o; returns the length.
    cdef char tmp[24]
    cdef Py_ssize_t n = 0, k = 0
    cdef uint64_t u
    if v < 0:
        o[0] = 45
        k = 1
        u = <uint64_t>(-(v + 1)) + 1
    else:
        u = <uint64_t>v
    while True:
        tmp[n] = <char>(48 + u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    while n > 0:
        n -= 1
        o[k] = tmp[n]
        k += 1
    return k


cdef inline void _sc_2(char* o, int v) noexcept:
    o[0] = <char>(48 + v // 10)
    o[1] = <char>(48 + v % 10)


@cython.cdivision(True)
cdef void _sc_civil(int64_t days, int64_t* year, int* month, int* day) noexcept:
    # Days since 1970-01-01 -> proleptic Gregorian date (the inverse of the splitter's
    # _spl_days_from_civil): eras of 400 years starting in March.
    cdef int64_t z = days + 719468
    cdef int64_t era = (z if z >= 0 else z - 146096) // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int m = <int>(mp + 3 if mp < 10 else mp - 9)
    year[0] = yoe + era * 400 + (1 if m <= 2 else 0)
    month[0] = m
    day[0] = <int>(doy - (153 * mp + 2) // 5 + 1)


cdef Py_ssize_t _sc_format_seconds(char* o, int64_t sec) noexcept:
    # "YYYY-MM-DDTHH:MM:SS" (19 characters for years 0..9999) for seconds since the epoch (UTC).
    cdef int64_t days = sec // 86400 if sec >= 0 else -((-sec + 86399) // 86400)
    cdef int64_t rem = sec - days * 86400
    cdef int64_t year
    cdef int month, day
    cdef Py_ssize_t k
    _sc_civil(days, &year, &month, &day)
    if 0 <= year <= 9999:
        _sc_2(o, <int>(year // 100))
        _sc_2(o + 2, <int>(year % 100))
        k = 4
    else:
        k = _sc_int(o, year)
    o[k] = 45
    _sc_2(o + k + 1, month)
    o[k + 3] = 45
    _sc_2(o + k + 4, day)
    o[k + 6] = 84
    _sc_2(o + k + 7, <int>(rem // 3600))
    o[k + 9] = 58
    _sc_2(o + k + 10, <int>(rem // 60 % 60))
    o[k + 12] = 58
    _sc_2(o + k + 13, <int>(rem % 60))
    return k + 15


def format_timestamp(int64_t ms):
    """Milliseconds since the epoch -> the report's ``2026-11-21T10:14:42.123Z`` (as bytes)."""
    cdef char buf[48]
    cdef int64_t sec = ms // 1000 if ms >= 0 else -((-ms + 999) // 1000)
    cdef Py_ssize_t k = _sc_format_seconds(buf, sec)
    cdef int milli = <int>(ms - sec * 1000)
    buf[k] = 46
    buf[k + 1] = <char>(48 + milli // 100)
    _sc_2(buf + k + 2, milli % 100)
    buf[k + 4] = 90
    return buf[:k + 5]


cdef const char* _SC_TYPE_PREFIX[4]
_SC_TYPE_PREFIX[0] = b""
_SC_TYPE_PREFIX[1] = b'{"type":"BINARY","size":'
_SC_TYPE_PREFIX[2] = b'{"type":"JSON","size":'
_SC_TYPE_PREFIX[3] = b'{"type":"STRING","size":'
cdef Py_ssize_t _SC_TYPE_PREFIX_LEN[4]
_SC_TYPE_PREFIX_LEN[:] = [0, 24, 22, 24]


cdef inline Py_ssize_t _sc_side(char* o, const char* name, Py_ssize_t name_len, uint8_t kind,
                                int64_t size) noexcept:
    # ,"key":{"type":"BINARY","size":N} (or "value"); returns the length written.
    cdef Py_ssize_t k = name_len + _SC_TYPE_PREFIX_LEN[kind]
    memcpy(o, name, <size_t>name_len)
    memcpy(o + name_len, _SC_TYPE_PREFIX[kind], <size_t>_SC_TYPE_PREFIX_LEN[kind])
    k += _sc_int(o + k, size)
    o[k] = 125
    return k + 1


cdef inline uint8_t _sc_type_code(object t) except 255:
    # A record's key/value type as the splitters give it: None or one of the three names.
    if t is None:
        return 0
    if t == "BINARY":
        return 1
    if t == "JSON":
        return 2
    if t == "STRING":
        return 3
    raise ValueError(f"unknown data type {t!r}")


@cython.final
cdef class ReportRouter:
    # Sinks by id; see the top of this file. Ids start at 1 and are never reused (2**32 of
    # them would take years of streams).
    cdef dict _sinks
    cdef uint64_t _next_id
    cdef list _dirty
    cdef readonly Py_ssize_t orphans    # reports for no registered sink / no pending slot
    cdef readonly Py_ssize_t dispatched

    def __cinit__(self):
        self._sinks = {}
        self._next_id = 1
        self._dirty = []

    def register(self, sink):
        """A Python sink: ``sink(seq, err, partition, offset, timestamp_ms)`` per report."""
        cdef uint64_t sid = self._next_id
        if sid > _SC_SEQ_MASK:
            raise OverflowError("sink ids exhausted")
        self._next_id = sid + 1
        self._sinks[sid] = sink
        return sid

    def unregister(self, uint64_t sid):
        self._sinks.pop(sid, None)

    def __len__(self):
        return len(self._sinks)

    def take_dirty(self):
        """The listeners of the StreamCores that got reports since the last call (once each)."""
        cdef list dirty = self._dirty
        self._dirty = []
        return dirty

    cdef inline void _deliver(self, object sink, uint64_t opaque, int32_t err, int32_t partition,
                              int64_t offset, int64_t timestamp) except *:
        cdef StreamCore core
        if type(sink) is StreamCore:
            core = <StreamCore>sink
            if core._complete(<uint32_t>(opaque & _SC_SEQ_MASK), err, partition, offset,
                              timestamp) and not core.dirty:
                core.dirty = True
                self._dirty.append(core.listener)
        else:
            sink(opaque & _SC_SEQ_MASK, err, partition, offset, timestamp)

    def dispatch(self, producer):
        """Deliver the batch of reports the producer's last poll() collected; returns how many.
        ``producer`` is an RdProducer (read in C) or any object with ``reports_ready`` and
        ``reports()`` (five columns: opaque, partition, offset, timestamp, error)."""
        cdef RdProducer rdp
        cdef _RdpState* st
        cdef Py_ssize_t i, n
        cdef uint64_t opaque, sid, last_sid = 0
        cdef object sink = None
        if type(producer) is RdProducer:
            rdp = <RdProducer>producer
            st = rdp._st
            n = st.count
            for i in range(n):
                opaque = st.opaque[i]
                sid = opaque >> 32
                if sid != last_sid:
                    sink = self._sinks.get(sid)
                    last_sid = sid
                if sink is None:
                    self.orphans += 1
                    continue
                self._deliver(sink, opaque, st.err[i], st.partition[i], st.offset[i],
                              st.timestamp[i])
            self.dispatched += n
            return n
        n = producer.reports_ready
        if not n:
            return 0
        cols = producer.reports()
        ops, parts, offs, tss, errs = cols
        for i in range(n):
            opaque = ops[i]
            sid = opaque >> 32
            sink = self._sinks.get(sid)
            if sink is None:
                self.orphans += 1
                continue
            self._deliver(sink, opaque, errs[i], parts[i], offs[i], tss[i])
        self.dispatched += n
        return n


@cython.final
cdef class StreamCore:
    # See the top of this file. `listener` is told (flush_reports) after a poll that completed
    # any of this stream's slots.
    cdef _Slot* _ring
    cdef uint64_t _mask
    cdef readonly uint64_t head       # oldest sequence number whose report is not taken
    cdef readonly uint64_t tail       # next sequence number
    cdef readonly Py_ssize_t capacity
    cdef ReportRouter _router
    cdef public bint dirty           # in the router's dirty list since the last take_ready
    cdef object _producer
    cdef RdProducer _rdp             # the same producer when it is an RdProducer, else None
    cdef object _topic               # RdTopic (RdProducer) or the topic name (other producers)
    cdef rd_kafka_topic_t* _rkt
    cdef int32_t _partitions
    cdef bytes _prefix
    cdef uint64_t _sid
    cdef public object listener
    cdef object _error_fn            # (librdkafka error) -> (error_code, message)
    cdef object _fail_fn             # (error_code, count) -> None: failure metrics
    cdef object _error_report        # (error_code, message) -> report bytes
    cdef readonly Py_ssize_t ok          # records delivered (200 reports)
    cdef readonly Py_ssize_t failed      # failure reports filed
    cdef readonly Py_ssize_t produced    # records handed to librdkafka
    cdef readonly int stop_reason        # why the last push() stopped early
    cdef readonly bint fatal_seen        # a fatal RecordError went by: read no more
    cdef readonly Py_ssize_t orphans     # reports for a slot not pending (a bug if not 0)
    cdef readonly Py_ssize_t pending     # records with librdkafka, report not in yet
    cdef readonly int mode               # report format: FORMAT_V3, FORMAT_V1 or FORMAT_V2
    # Rate limits (gateway.limits): what push() handed over, cumulative, and the records it
    # dropped because the allowance it was given ran out (each gets `rate_report`).
    cdef readonly int64_t used_records
    cdef readonly int64_t used_bytes
    cdef readonly Py_ssize_t rate_dropped
    cdef public bytes rate_report
    # Timestamp formatting cache: the second last formatted and its text.
    cdef bint _closed
    cdef int64_t _ts_sec
    cdef char _ts_text[32]
    cdef Py_ssize_t _ts_len

    def __cinit__(self):
        self._ts_sec = -(1 << 62)

    def __init__(self, ReportRouter router not None, producer, topic, int32_t partitions,
                 Py_ssize_t capacity, bytes prefix not None, listener, error_fn, fail_fn,
                 error_report, int mode=FORMAT_V3):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        if capacity > (1 << 30):
            raise ValueError("capacity must be at most 2**30")
        if mode not in (FORMAT_V3, FORMAT_V1, FORMAT_V2):
            raise ValueError(f"unknown report format {mode}")
        self.mode = mode
        self._router = router
        self._bind(producer, topic)
        self._partitions = partitions
        self.capacity = capacity
        self._prefix = prefix
        self.listener = listener
        self._error_fn = error_fn
        self._fail_fn = fail_fn
        self._error_report = error_report
        self._sid = router.register(self)

    def __dealloc__(self):
        self._release()

    cdef int _bind(self, object producer, object topic) except -1:
        cdef str name = topic.name if type(topic) is RdTopic else topic
        self._producer = producer
        if type(producer) is RdProducer:
            self._rdp = <RdProducer>producer
            self._topic = self._rdp.topic(name)
            self._rkt = (<RdTopic>self._topic)._rkt
        else:
            self._rdp = None
            self._topic = name
            self._rkt = NULL
        return 0

    def rebind(self, producer):
        """Produce the next records with another producer (the old one was replaced after a
        fatal error). Reports of records already handed over still come, through the router."""
        self._bind(producer, self._topic)

    cdef void _release(self) noexcept:
        cdef uint64_t s
        cdef _Slot* slot
        self._closed = True
        if self._ring == NULL:
            return
        s = self.head
        while s < self.tail:
            slot = &self._ring[s & self._mask]
            if slot.report != NULL:
                Py_DECREF(<object>slot.report)
                slot.report = NULL
            s += 1
        free(self._ring)
        self._ring = NULL

    def close(self):
        """Leave the router and free the ring (once every report is taken, or to discard).
        The listener is dropped too: it usually holds the core (no reference cycle left)."""
        if self._router is not None:
            self._router.unregister(self._sid)
        self._release()
        self.head = self.tail
        self.listener = None

    @property
    def sink_id(self):
        return self._sid

    def __len__(self):
        return self.tail - self.head

    @property
    def full(self):
        return self.tail - self.head >= <uint64_t>self.capacity

    cdef int _grow(self, uint64_t size) except -1:
        # Also the first allocation (no ring yet: head == tail, nothing to copy).
        cdef _Slot* ring = <_Slot*>calloc(size, sizeof(_Slot))
        cdef uint64_t s, mask = size - 1
        if ring == NULL:
            raise MemoryError()
        if self._ring != NULL:
            s = self.head
            while s < self.tail:
                ring[s & mask] = self._ring[s & self._mask]
                s += 1
            free(self._ring)
        self._ring = ring
        self._mask = mask
        return 0

    cdef inline _Slot* _new_slot(self) except NULL:
        cdef _Slot* slot
        if self._ring == NULL:
            if self._closed:
                raise RuntimeError("the stream core is closed")
            self._grow(_SC_INITIAL_SLOTS)
        elif self.tail - self.head > self._mask:
            self._grow((self._mask + 1) * 2)
        slot = &self._ring[self.tail & self._mask]
        self.tail += 1
        return slot

    cdef int _file_failure(self, int code, object message) except -1:
        cdef bytes report = self._error_report(code, message)
        cdef _Slot* slot = self._new_slot()
        Py_INCREF(report)
        slot.report = <PyObject*>report
        slot.state = _SC_FAILED
        self.failed += 1
        self._fail_fn(code, 1)
        return 0

    cdef int _file_rate_drop(self) except -1:
        cdef bytes report = self.rate_report
        cdef _Slot* slot
        if report is None:
            report = self._error_report(429, "record dropped: the produce rate limit is exceeded")
            self.rate_report = report
        slot = self._new_slot()
        Py_INCREF(report)
        slot.report = <PyObject*>report
        slot.state = _SC_FAILED
        self.failed += 1
        self.rate_dropped += 1
        self._fail_fn(429, 1)
        return 0

    def push_failure(self, int code, message, bint force=False):
        """File a failure report for a record that never reaches Kafka. Over the capacity only
        with ``force``: a final, bounded batch after reading has stopped for good."""
        if not force and self.tail - self.head >= <uint64_t>self.capacity:
            raise OverflowError("the stream's in-flight window is full")
        self._file_failure(code, message)

    def push(self, list items not None, Py_ssize_t i=0, int64_t allow_records=-1,
             int64_t allow_bytes=-1):
        """Hand items[i:] to Kafka in order; returns the index of the first item not taken
        (len(items) when all were). ``stop_reason`` says why it stopped early: the in-flight
        window is full, or librdkafka's queue is (retry after reports come in). With
        ``allow_records``/``allow_bytes`` (-1: no limit), records beyond that allowance are
        dropped with ``rate_report`` (key and value bytes count)."""
        cdef Py_ssize_t n = PyList_GET_SIZE(items)
        cdef object item
        cdef tuple rec
        cdef object key, value, headers
        cdef int64_t partition, ts
        cdef const char* kp
        cdef const char* vp
        cdef size_t kl, vl
        cdef rd_kafka_headers_t* hdrs
        cdef rd_kafka_resp_err_t err
        cdef uint64_t seq
        cdef _Slot* slot
        cdef uint8_t kt, vt
        cdef int64_t size
        cdef bint limited = allow_records >= 0 or allow_bytes >= 0
        if allow_records < 0:
            allow_records = <int64_t>1 << 62
        if allow_bytes < 0:
            allow_bytes = <int64_t>1 << 62
        self.stop_reason = SC_STOP_NONE
        while i < n:
            if self.tail - self.head >= <uint64_t>self.capacity:
                self.stop_reason = SC_STOP_IN_FLIGHT
                return i
            item = <object>PyList_GET_ITEM(items, i)
            if type(item) is not tuple:
                # A RecordError: its report, and no more records if the splitter gave up.
                self._file_failure(item.error_code, item.message)
                if item.fatal:
                    self.fatal_seen = True
                i += 1
                continue
            rec = <tuple>item
            # (index, partition, key, value, headers, timestamp_ms, key_type, value_type)
            partition = <object>PyTuple_GET_ITEM(rec, 1)
            if partition >= self._partitions:
                self._file_failure(
                    40402,
                    f"partition_id {partition} does not exist: topic '{self.topic_name}' has "
                    f"{self._partitions} partitions")
                i += 1
                continue
            key = <object>PyTuple_GET_ITEM(rec, 2)
            value = <object>PyTuple_GET_ITEM(rec, 3)
            headers = <object>PyTuple_GET_ITEM(rec, 4)
            ts = <object>PyTuple_GET_ITEM(rec, 5)
            kt = _sc_type_code(<object>PyTuple_GET_ITEM(rec, 6))
            vt = _sc_type_code(<object>PyTuple_GET_ITEM(rec, 7))
            if limited:
                size = (0 if key is None else PyBytes_GET_SIZE(key)) + (
                    0 if value is None else PyBytes_GET_SIZE(value))
                if allow_records < 1 or size > allow_bytes:
                    self._file_rate_drop()
                    i += 1
                    continue
                allow_records -= 1
                allow_bytes -= size
                self.used_records += 1
                self.used_bytes += size
            seq = self.tail
            if self._rdp is not None:
                kp = NULL
                vp = NULL
                kl = 0
                vl = 0
                if key is not None:
                    kp = PyBytes_AS_STRING(key)
                    kl = <size_t>PyBytes_GET_SIZE(key)
                if value is not None:
                    vp = PyBytes_AS_STRING(value)
                    vl = <size_t>PyBytes_GET_SIZE(value)
                hdrs = _rdp_headers(headers) if headers else NULL
                err = self._rdp.produce_c(self._rkt, <int32_t>partition, kp, kl, vp, vl, hdrs,
                                          ts, (self._sid << 32) | (seq & _SC_SEQ_MASK))
                if err and hdrs != NULL:
                    rd_kafka_headers_destroy(hdrs)
            else:
                err = self._producer.produce(self._topic, partition, key, value, headers, ts,
                                             (self._sid << 32) | (seq & _SC_SEQ_MASK))
            if err:
                if err == RD_KAFKA_RESP_ERR__QUEUE_FULL:
                    self.stop_reason = SC_STOP_KAFKA_QUEUE
                    return i
                code, message = self._error_fn(err)
                self._file_failure(code, message)
                i += 1
                continue
            slot = self._new_slot()
            slot.state = _SC_PENDING
            slot.key_type = kt
            slot.value_type = vt
            slot.key_size = 0 if key is None else PyBytes_GET_SIZE(key)
            slot.value_size = 0 if value is None else PyBytes_GET_SIZE(value)
            self.produced += 1
            self.pending += 1
            i += 1
        return i

    @property
    def producer(self):
        """The producer records are handed to (see rebind)."""
        return self._producer

    @property
    def topic_name(self):
        return self._topic.name if type(self._topic) is RdTopic else self._topic

    cdef bint _complete(self, uint32_t seq32, int32_t err, int32_t partition, int64_t offset,
                        int64_t timestamp) except -1:
        # One delivery report; True when a slot was completed.
        cdef _Slot* slot
        cdef bytes report
        if self._ring == NULL:
            self.orphans += 1
            return False
        slot = &self._ring[seq32 & self._mask]
        if slot.state != _SC_PENDING:
            self.orphans += 1
            return False
        self.pending -= 1
        if err == 0:
            slot.partition = partition
            # A resend the broker already had (its first answer was lost) is acknowledged with
            # no offset: reported as -1, Kafka's "unknown offset".
            slot.offset = offset if offset >= 0 else -1
            slot.timestamp = timestamp
            slot.state = _SC_OK
            self.ok += 1
            return True
        code, message = self._error_fn(err)
        report = self._error_report(code, message)
        Py_INCREF(report)
        slot.report = <PyObject*>report
        slot.state = _SC_FAILED
        self.failed += 1
        self._fail_fn(code, 1)
        return True

    def take_ready(self):
        """Every report whose predecessors are all known, in order, as one bytes object."""
        cdef uint64_t s = self.head
        cdef uint64_t tail = self.tail
        cdef _Slot* slot
        cdef Py_ssize_t pos = 0, need, plen
        cdef bytes report
        cdef int64_t sec, ms
        cdef int milli
        cdef char* o
        self.dirty = False
        if self._ring == NULL:
            return b""
        plen = PyBytes_GET_SIZE(self._prefix)
        while s < tail:
            slot = &self._ring[s & self._mask]
            if slot.state == _SC_OK and self.mode != FORMAT_V3:
                need = pos + 128
                if need > _sc_out_cap:
                    _sc_reserve(need)
                o = _sc_out + pos
                memcpy(o, b'{"partition":', 13)
                o += 13
                o += _sc_int(o, slot.partition)
                memcpy(o, b',"offset":', 10)
                o += 10
                o += _sc_int(o, slot.offset)
                if self.mode == FORMAT_V2:
                    memcpy(o, b',"error_code":null,"error":null', 31)
                    o += 31
                o[0] = 125
                o[1] = 44
                o += 2
                pos = o - _sc_out
            elif slot.state == _SC_OK:
                # prefix + partition + offset + timestamp + key/value + "}\r\n": well under 256
                need = pos + plen + 256
                if need > _sc_out_cap:
                    _sc_reserve(need)
                o = _sc_out + pos
                memcpy(o, PyBytes_AS_STRING(self._prefix), <size_t>plen)
                o += plen
                o += _sc_int(o, slot.partition)
                memcpy(o, b',"offset":', 10)
                o += 10
                o += _sc_int(o, slot.offset)
                memcpy(o, b',"timestamp":"', 14)
                o += 14
                ms = slot.timestamp
                sec = ms // 1000 if ms >= 0 else -((-ms + 999) // 1000)
                if sec != self._ts_sec:
                    self._ts_len = _sc_format_seconds(self._ts_text, sec)
                    self._ts_sec = sec
                memcpy(o, self._ts_text, <size_t>self._ts_len)
                o += self._ts_len
                milli = <int>(ms - sec * 1000)
                o[0] = 46
                o[1] = <char>(48 + milli // 100)
                _sc_2(o + 2, milli % 100)
                o[4] = 90
                o[5] = 34
                o += 6
                if slot.key_type:
                    o += _sc_side(o, b',"key":', 7, slot.key_type, slot.key_size)
                if slot.value_type:
                    o += _sc_side(o, b',"value":', 9, slot.value_type, slot.value_size)
                o[0] = 125
                o[1] = 13
                o[2] = 10
                o += 3
                pos = o - _sc_out
            elif slot.state == _SC_FAILED:
                report = <bytes>slot.report
                need = pos + PyBytes_GET_SIZE(report)
                if need > _sc_out_cap:
                    _sc_reserve(need)
                memcpy(_sc_out + pos, PyBytes_AS_STRING(report), <size_t>PyBytes_GET_SIZE(report))
                pos = need
                Py_DECREF(report)   # the slot's reference
                slot.report = NULL
                report = None
            else:
                break
            slot.state = _SC_FREE
            s += 1
        self.head = s
        if s == tail and self._mask >= _SC_KEEP_SLOTS:
            # Empty after a burst: give the big ring back (the next record allocates anew).
            free(self._ring)
            self._ring = NULL
            self._mask = 0
        if pos == 0:
            return b""
        out = _sc_out[:pos]
        if _sc_out_cap > _SC_KEEP_OUT:
            _sc_free_out()
        return out

    def debug_info(self):
        return {"sink_id": self._sid, "head": self.head, "tail": self.tail,
                "pending": self.pending,
                "slots": 0 if self._ring == NULL else self._mask + 1, "ok": self.ok,
                "failed": self.failed, "orphans": self.orphans}


cdef void _sc_free_out() noexcept:
    global _sc_out, _sc_out_cap
    free(_sc_out)
    _sc_out = NULL
    _sc_out_cap = 0


# The report formats for Python callers.
REPORT_FORMAT_V3 = FORMAT_V3
REPORT_FORMAT_V1 = FORMAT_V1
REPORT_FORMAT_V2 = FORMAT_V2
