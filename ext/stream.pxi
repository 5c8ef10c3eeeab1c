# StreamCore and ReportRouter: the per-record half of a v3 produce stream in C (issue 4).
#
# A v3 stream's records go from the splitter's items to librdkafka, and their delivery reports
# come back to the client in the order sent. Python (gateway/produce/session.py) keeps the
# stream's lifecycle: pausing, backlog, shutdown, logging. Everything done once per record is
# here, with no Python call per record on the delivery side:
#
# - StreamCore.push(items, i) hands records to the producer (ProducerBase.produce_record:
#   RdProducer's goes straight to librdkafka's C API) and files each
#   one in a ring of C slots indexed by its sequence number. The ring is the per-connection
#   in-flight window: it stops at `capacity` and grows by doubling from a few slots, so an idle
#   stream costs little (10,000 open streams). Records that fail before Kafka (bad record,
#   partition out of range, a refused produce) get their failure report in their slot at once.
# - Each produced record's msg_opaque is (sink id << 32) | (sequence number & 0xFFFFFFFF).
#   ReportRouter.dispatch() walks RdProducer's batch of delivery reports (C arrays filled by
#   librdkafka's callback) and completes the slots of the StreamCores the ids name, in C. A v3
#   stream, a v1/v2 request and a records:batch request each have one StreamCore.
# - StreamCore.take_ready() formats the completed prefix of the ring into one bytes object
#   (reports.pxi): the exact report bytes of docs/api.md §1, in order, or v1/v2 offsets entries.
#   take_outcomes() hands the same prefix to Python instead (records:batch builds its answer).
# - A Python callback that raises while a report is handled (the core's error and metrics
#   functions) costs only its own stream: the router fails that core's pending records with an
#   internal-error report (50003), keeps its listener and the exception for the producer to log
#   and tell (take_failures), and goes on with the rest of the batch.
#
# Everything here runs on the event loop thread: no lock, no GIL release.

from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE

cdef enum:
    # The ring is allocated with the first record (an idle stream has none), starts with a few
    # slots, doubles as needed, and is given back when it empties after having grown past
    # _SC_KEEP_SLOTS.
    _SC_INITIAL_SLOTS = 4
    _SC_KEEP_SLOTS = 1024
    # Why push() stopped before the end of its items (the session's pause reasons).
    SC_STOP_NONE = 0
    SC_STOP_IN_FLIGHT = 1 << 4
    SC_STOP_KAFKA_QUEUE = 1 << 5
    SC_STOP_OTHER_TOPIC = 1 << 6    # push_spooled: the next record is another topic's

cdef uint64_t _SC_SEQ_MASK = 0xFFFFFFFF


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



# The report of a record whose outcome was lost to an internal error in its stream's report
# handling: it may or may not be in Kafka, so the client may resend it (at least once).
_SC_INTERNAL_MESSAGE = (
    "internal error of the gateway while reporting this record: its outcome is unknown; "
    "resend it")
cdef bytes _SC_INTERNAL_REPORT = (
    b'{"error_code":50003,"message":"' + _SC_INTERNAL_MESSAGE.encode() + b'"}\r\n')
cdef tuple _SC_TYPE_NAMES = (None, "BINARY", "JSON", "STRING")


@cython.final
cdef class ReportRouter:
    # StreamCores by sink id; see the top of this file. Ids start at 1 and are never reused
    # (2**32 of them would take years of streams).
    cdef dict _sinks
    cdef uint64_t _next_id
    cdef list _dirty
    cdef list _failures
    cdef list _respool
    cdef Py_ssize_t _at                 # the report being handled (for the failure path)
    cdef readonly Py_ssize_t orphans    # reports for no registered core / no pending slot
    cdef readonly Py_ssize_t dispatched

    def __cinit__(self):
        self._sinks = {}
        self._next_id = 1
        self._dirty = []
        self._failures = []
        self._respool = []

    cdef uint64_t _register(self, StreamCore core) except 0:
        cdef uint64_t sid = self._next_id
        if sid > _SC_SEQ_MASK:
            raise OverflowError("sink ids exhausted")
        self._next_id = sid + 1
        self._sinks[sid] = core
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

    def take_failures(self):
        """(listener, exception) of each StreamCore whose report handling raised since the last
        call; its pending records were failed with the internal-error report."""
        cdef list failures = self._failures
        self._failures = []
        return failures

    cdef Py_ssize_t _run(self, ProducerBase producer, _RdpState* st, Py_ssize_t i,
                         Py_ssize_t n) except -1:
        cdef uint64_t opaque, sid, last_sid = 0
        cdef object found
        cdef StreamCore core = None
        cdef bint respooled
        while i < n:
            opaque = st.opaque[i]
            sid = opaque >> 32
            if sid != last_sid:
                found = self._sinks.get(sid)
                core = <StreamCore>found if found is not None else None
                last_sid = sid
            self._at = i
            if core is None:
                self.orphans += 1
            elif st.err[i] != 0 and core.spool_retriable and (
                    st.failed[i] != NULL or producer._failed_items):
                # A record Kafka failed with a retriable error goes to the disk spool, not to
                # a 50003 report (its slot waits for the spool: see take_respool).
                respooled = core._respool(<uint32_t>(opaque & _SC_SEQ_MASK), st.err[i],
                                          producer._take_failed(i))
                if respooled:
                    if not core.respool_listed:
                        core.respool_listed = True
                        self._respool.append(core)
                elif not core.dirty:
                    core.dirty = True
                    self._dirty.append(core.listener)
            elif core._complete(<uint32_t>(opaque & _SC_SEQ_MASK), st.err[i], st.partition[i],
                                st.offset[i], st.timestamp[i]) and not core.dirty:
                core.dirty = True
                self._dirty.append(core.listener)
            i += 1
        return n

    def take_respool(self):
        """The StreamCores holding records Kafka failed with a retriable error since the last
        call, to be appended to the disk spool (StreamCore.take_respool), once each."""
        cdef list cores = self._respool
        cdef StreamCore core
        self._respool = []
        for core in cores:
            core.respool_listed = False
        return cores

    def dispatch(self, ProducerBase producer not None):
        """Deliver the batch of reports the producer's last poll() collected; returns how many."""
        cdef _RdpState* st = producer._st
        cdef Py_ssize_t n = st.count
        cdef Py_ssize_t i = 0
        cdef object found
        while i < n:
            try:
                i = self._run(producer, st, i, n)
            except Exception as exc:
                # One stream's callback raised: that stream alone ends (its listener is told
                # through take_failures); the rest of the batch is still delivered.
                found = self._sinks.get(st.opaque[self._at] >> 32)
                if found is not None:
                    (<StreamCore>found)._break()
                    self._failures.append(((<StreamCore>found).listener, exc))
                i = self._at + 1
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
    cdef ProducerBase _producer
    cdef object _topic               # what the producer's topic(name) gave (RdTopic, or the name)
    cdef readonly str topic_name
    cdef int32_t _partitions
    cdef bytes _prefix
    cdef uint64_t _sid
    cdef public object listener
    cdef object _error_fn            # (librdkafka error) -> (error_code, message)
    cdef object _fail_fn             # (error_code, count) -> None: failure metrics
    cdef object _error_report        # (error_code, message) -> report bytes
    cdef readonly Py_ssize_t ok          # records delivered (200 reports)
    cdef readonly Py_ssize_t failed      # failure reports filed
    cdef readonly Py_ssize_t produced    # records handed to the producer
    cdef readonly int stop_reason        # why the last push() stopped early
    cdef readonly bint fatal_seen        # a fatal RecordError went by: read no more
    cdef readonly Py_ssize_t orphans     # reports for a slot not pending (a bug if not 0)
    cdef readonly Py_ssize_t pending     # records with no outcome yet: with the producer,
                                         # or in the spool, not yet durable
    cdef readonly Py_ssize_t spooling    # of those, in the spool (see spool())
    cdef readonly Py_ssize_t spooled     # records reported 202: durable in the spool
    cdef readonly uint64_t spool_token   # the token of this core's latest spool append
    cdef uint64_t _spool_cursor          # no record before it is waiting for the spool
    cdef public bytes spooled_report
    # Records Kafka failed with a retriable error go to the spool (see __cinit__).
    cdef public bint spool_retriable
    cdef public bint respool_listed      # in the router's respool list
    cdef list _respool_items             # their contents, in report order, for the spool
    cdef readonly int mode               # report format: FORMAT_V3, FORMAT_V1 or FORMAT_V2
    # An internal error in this stream's report handling (see _break): its pending records got
    # the internal-error report; reports that come for them later are counted in `late`.
    cdef readonly bint broken
    cdef readonly Py_ssize_t broken_failed
    cdef readonly Py_ssize_t late
    # Rate limits (gateway.limits): what push() handed over, cumulative, and the records it
    # dropped because the allowance it was given ran out (each gets `rate_report`).
    cdef readonly int64_t used_records
    cdef readonly int64_t used_bytes
    cdef readonly Py_ssize_t rate_dropped
    cdef public bytes rate_report
    cdef bint _closed
    cdef _TsCache _ts

    def __cinit__(self):
        _ts_cache_init(&self._ts)
        # A record Kafka fails with a retriable error goes to the disk spool when the producer
        # kept its content (keep_failed: the spool is on); the forwarder's cores opt out.
        self.spool_retriable = True

    def __init__(self, ReportRouter router not None, ProducerBase producer not None, str topic not None,
                 int32_t partitions, Py_ssize_t capacity, bytes prefix not None, listener,
                 error_fn, fail_fn, error_report, int mode=FORMAT_V3):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        if capacity > (1 << 30):
            raise ValueError("capacity must be at most 2**30")
        if mode not in (FORMAT_V3, FORMAT_V1, FORMAT_V2):
            raise ValueError(f"unknown report format {mode}")
        self.mode = mode
        self.topic_name = topic
        self._bind(producer)
        self._partitions = partitions
        self.capacity = capacity
        self._prefix = prefix
        self.listener = listener
        self._error_fn = error_fn
        self._fail_fn = fail_fn
        self._error_report = error_report
        self._router = router
        self._sid = router._register(self)

    def __dealloc__(self):
        self._release()

    cdef int _bind(self, ProducerBase producer) except -1:
        self._producer = producer
        self._topic = producer.topic(self.topic_name)
        return 0

    def rebind(self, ProducerBase producer not None):
        """Produce the next records with another producer (the old one was replaced after a
        fatal error). Reports of records already handed over still come, through the router."""
        self._bind(producer)

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
        self._close()

    cdef int _close(self) except -1:
        # (close() for C callers: the session's end)
        if self._router is not None:
            self._router._sinks.pop(self._sid, None)
        self._release()
        self.head = self.tail
        self.listener = None
        return 0

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
        if self._ring == NULL:
            if self._closed:
                raise RuntimeError("the stream core is closed")
            self._grow(_SC_INITIAL_SLOTS)
        elif self.tail - self.head > self._mask:
            self._grow((self._mask + 1) * 2)
        cdef _Slot* slot = &self._ring[self.tail & self._mask]
        self.tail += 1
        return slot

    cdef inline void _fill_failed(self, _Slot* slot, bytes report) noexcept:
        Py_INCREF(report)
        slot.report = <PyObject*>report
        slot.state = _SC_FAILED
        self.failed += 1

    cdef int _file_failure(self, int code, object message) except -1:
        cdef bytes report = self._error_report(code, message)
        self._fill_failed(self._new_slot(), report)
        self._fail_fn(code, 1)
        return 0

    cdef int _file_rate_drop(self) except -1:
        cdef bytes report = self.rate_report
        if report is None:
            report = self._error_report(429, "record dropped: the produce rate limit is exceeded")
            self.rate_report = report
        self._fill_failed(self._new_slot(), report)
        self.rate_dropped += 1
        self._fail_fn(429, 1)
        return 0

    cdef int _file_record_error(self, object item) except -1:
        # A RecordError from the splitter: its report, and no more records if it gave up.
        self._file_failure(item.error_code, item.message)
        if item.fatal:
            self.fatal_seen = True
        return 0

    cdef inline bint _bad_partition(self, int64_t partition) except -1:
        # An explicit partition the topic does not have: its failure report filed (True).
        if partition < self._partitions:
            return False
        self._file_failure(
            40402,
            f"partition_id {partition} does not exist: topic '{self.topic_name}' has "
            f"{self._partitions} partitions")
        return True

    cdef inline bint _over_allowance(self, tuple rec, int64_t* allow_records,
                                     int64_t* allow_bytes) except -1:
        # The rate limits (gateway.limits): charge the record's key and value bytes to the
        # allowance, or drop it with the 429 report (True).
        cdef object key = <object>PyTuple_GET_ITEM(rec, 2)
        cdef object value = <object>PyTuple_GET_ITEM(rec, 3)
        cdef int64_t size = (0 if key is None else PyBytes_GET_SIZE(key)) + (
            0 if value is None else PyBytes_GET_SIZE(value))
        if allow_records[0] < 1 or size > allow_bytes[0]:
            self._file_rate_drop()
            return True
        allow_records[0] -= 1
        allow_bytes[0] -= size
        self.used_records += 1
        self.used_bytes += size
        return False

    cdef void _place_spooled(self, uint64_t s, uint64_t token) noexcept:
        # The records from sequence s on that wait for the spool with no token yet (their
        # append just returned ``token``) wait for that token.
        cdef _Slot* slot
        while s < self.tail:
            slot = &self._ring[s & self._mask]
            if slot.state == _SC_SPOOLING and slot.offset == 0:
                slot.offset = <int64_t>token
            s += 1
        if token > self.spool_token:
            self.spool_token = token

    cdef Py_ssize_t _fail_unplaced(self, bytes report) except -1:
        # The spool refused the append of the records waiting with no token: each gets
        # ``report``; returns how many.
        cdef uint64_t s = self.head
        cdef _Slot* slot
        cdef Py_ssize_t n = 0
        if self._ring == NULL:
            return 0
        while s < self.tail:
            slot = &self._ring[s & self._mask]
            if slot.state == _SC_SPOOLING and slot.offset == 0:
                self._fill_failed(slot, report)
                n += 1
            s += 1
        self.pending -= n
        self.spooling -= n
        if n:
            self._fail_fn(50003, n)
        return n

    cdef inline int _hand(self, int64_t partition, object key, object value, object headers,
                          int64_t ts, uint8_t kt, uint8_t vt) except -1:
        # One record to the producer, its slot filed as pending (0); librdkafka's queue full
        # (1: not taken); refused by produce() (2: its failure report filed).
        cdef uint64_t seq = self.tail
        cdef _Slot* slot
        cdef int err = self._producer.produce_record(
            self._topic, <int32_t>partition, key, value, headers, ts,
            (self._sid << 32) | (seq & _SC_SEQ_MASK))
        if err:
            if err == RD_KAFKA_RESP_ERR__QUEUE_FULL:
                return 1
            code, message = self._error_fn(err)
            self._file_failure(code, message)
            return 2
        slot = self._new_slot()
        slot.state = _SC_PENDING
        slot.key_type = kt
        slot.value_type = vt
        slot.key_size = 0 if key is None else PyBytes_GET_SIZE(key)
        slot.value_size = 0 if value is None else PyBytes_GET_SIZE(value)
        self.produced += 1
        self.pending += 1
        return 0

    def push_failure(self, int code, message, bint force=False):
        """File a failure report for a record that never reaches Kafka. Over the capacity only
        with ``force``: a final, bounded batch after reading has stopped for good."""
        if not force and self.tail - self.head >= <uint64_t>self.capacity:
            raise OverflowError("the stream's in-flight window is full")
        self._file_failure(code, message)

    def refuse(self, list items not None, Py_ssize_t i, int code, message):
        """Give every record of items[i:] the failure report (code, message) instead of handing
        it over (Kafka is known to be unreachable); a RecordError still gets its own report.
        Stops at the in-flight window like push(); returns the index of the first item not
        taken. The report is built once and the metrics are told once."""
        cdef Py_ssize_t n = PyList_GET_SIZE(items)
        cdef Py_ssize_t refused = 0
        cdef object item
        cdef bytes report = self._error_report(code, message)
        self.stop_reason = SC_STOP_NONE
        try:
            while i < n:
                if self.tail - self.head >= <uint64_t>self.capacity:
                    self.stop_reason = SC_STOP_IN_FLIGHT
                    return i
                item = <object>PyList_GET_ITEM(items, i)
                if type(item) is not tuple:
                    self._file_record_error(item)
                else:
                    self._fill_failed(self._new_slot(), report)
                    refused += 1
                i += 1
            return i
        finally:
            if refused:
                self._fail_fn(code, refused)

    def push(self, list items not None, Py_ssize_t i=0, int64_t allow_records=-1,
             int64_t allow_bytes=-1):
        """Hand items[i:] to Kafka in order; returns the index of the first item not taken
        (len(items) when all were). ``stop_reason`` says why it stopped early: the in-flight
        window is full, or librdkafka's queue is (retry after reports come in). With
        ``allow_records``/``allow_bytes`` (-1: no limit), records beyond that allowance are
        dropped with ``rate_report`` (key and value bytes count)."""
        return self._push(items, i, allow_records, allow_bytes)

    cdef Py_ssize_t _push(self, list items, Py_ssize_t i, int64_t allow_records,
                          int64_t allow_bytes) except -1:
        # (push() for C callers: hand_over)
        cdef Py_ssize_t n = PyList_GET_SIZE(items)
        cdef object item
        cdef tuple rec
        cdef bint limited = allow_records >= 0 or allow_bytes >= 0
        if self.broken:
            raise RuntimeError("the stream core is broken: it takes no more records")
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
                self._file_record_error(item)
                i += 1
                continue
            rec = <tuple>item
            # (index, partition, key, value, headers, timestamp_ms, key_type, value_type)
            if self._bad_partition(<object>PyTuple_GET_ITEM(rec, 1)) or (
                    limited and self._over_allowance(rec, &allow_records, &allow_bytes)):
                i += 1
                continue
            if self._hand(<object>PyTuple_GET_ITEM(rec, 1), <object>PyTuple_GET_ITEM(rec, 2),
                          <object>PyTuple_GET_ITEM(rec, 3), <object>PyTuple_GET_ITEM(rec, 4),
                          <object>PyTuple_GET_ITEM(rec, 5),
                          _sc_type_code(<object>PyTuple_GET_ITEM(rec, 6)),
                          _sc_type_code(<object>PyTuple_GET_ITEM(rec, 7))) == 1:
                self.stop_reason = SC_STOP_KAFKA_QUEUE
                return i
            i += 1
        return i

    def spool(self, list items not None, Py_ssize_t i, spool, int64_t allow_records=-1,
              int64_t allow_bytes=-1):
        """Append items[i:] to the disk spool instead of handing them to Kafka (issue 11): one
        ``spool.append(topic, records)`` call for every record taken, each filed in its slot as
        waiting for the spool; ``spool_settle`` reports them once durable. Checks, stops and
        allowances as push(); returns the index of the first item not taken. If the spool
        refuses the batch (full, its write buffer full, failed), the records of this call get
        the 50003 report saying why, and the exception is raised again unless it is a retriable
        refusal (``retriable`` true)."""
        cdef Py_ssize_t n = PyList_GET_SIZE(items)
        cdef object item
        cdef tuple rec
        cdef uint64_t first = self.tail
        cdef _Slot* slot
        cdef list records = []
        cdef bint limited = allow_records >= 0 or allow_bytes >= 0
        if self.broken:
            raise RuntimeError("the stream core is broken: it takes no more records")
        if allow_records < 0:
            allow_records = <int64_t>1 << 62
        if allow_bytes < 0:
            allow_bytes = <int64_t>1 << 62
        self.stop_reason = SC_STOP_NONE
        while i < n:
            if self.tail - self.head >= <uint64_t>self.capacity:
                self.stop_reason = SC_STOP_IN_FLIGHT
                break
            item = <object>PyList_GET_ITEM(items, i)
            if type(item) is not tuple:
                self._file_record_error(item)
                i += 1
                continue
            rec = <tuple>item
            if self._bad_partition(<object>PyTuple_GET_ITEM(rec, 1)) or (
                    limited and self._over_allowance(rec, &allow_records, &allow_bytes)):
                i += 1
                continue
            records.append(rec)
            slot = self._new_slot()
            slot.state = _SC_SPOOLING
            slot.offset = 0
            self.pending += 1
            self.spooling += 1
            i += 1
        if not records:
            return i
        try:
            token = spool.append(self.topic_name, records)
        except Exception as exc:
            self._fail_unplaced(self._error_report(
                50003, f"the spool cannot take this record: {exc}; resend it"))
            if not getattr(exc, "retriable", False):
                raise
            return i
        self._place_spooled(first, token)
        return i

    def spool_settle(self, uint64_t end, bytes failure=None):
        """The spool made every record before its sequence number ``end`` durable (``failure``
        None: each of them waiting here gets the 202 ``spooled_report``), or could not write
        them (each gets ``failure``). Returns how many records were settled."""
        cdef uint64_t s
        cdef _Slot* slot
        cdef Py_ssize_t settled = 0
        cdef bytes report = failure if failure is not None else self.spooled_report
        if self._ring == NULL or not self.spooling or self.broken:
            return 0
        if report is None:
            raise ValueError("spooled_report is not set")
        s = self._spool_cursor if self._spool_cursor > self.head else self.head
        while s < self.tail:
            slot = &self._ring[s & self._mask]
            if slot.state == _SC_SPOOLING:
                if <uint64_t>slot.offset > end or slot.offset == 0:
                    break
                Py_INCREF(report)
                slot.report = <PyObject*>report
                slot.state = _SC_FAILED
                settled += 1
            s += 1
        self._spool_cursor = s
        self.pending -= settled
        self.spooling -= settled
        if failure is None:
            self.spooled += settled
        else:
            self.failed += settled
            self._fail_fn(50003, settled)
        return settled

    cdef bint _respool(self, uint32_t seq32, int32_t err, object record) except -1:
        # A delivery report with a retriable error and the record's content: the slot waits for
        # the spool (True), or, without the content, gets its failure report as _complete
        # gives it (False). The error is still told (_error_fn: a fatal one replaces the
        # producer).
        cdef _Slot* slot
        if self.broken:
            self.late += 1
            return False
        if self._ring == NULL:
            self.orphans += 1
            return False
        slot = &self._ring[seq32 & self._mask]
        if slot.state != _SC_PENDING:
            self.orphans += 1
            return False
        code, message = self._error_fn(err)
        if record is None or code != 50003:
            self._fill_failed(slot, self._error_report(code, message))
            self.pending -= 1
            self._fail_fn(code, 1)
            return False
        if self._respool_items is None:
            self._respool_items = []
        self._respool_items.append(record)
        slot.state = _SC_SPOOLING
        slot.offset = 0
        self.spooling += 1
        # (still pending: its outcome is not known until the spool has it)
        return True

    def take_respool(self):
        """The records of take_respool's cores to append to the spool, in order; then call
        respooled() with the append's token, or respool_failed() with a failure report."""
        cdef list items = self._respool_items
        self._respool_items = None
        return items if items is not None else []

    def respooled(self, uint64_t token):
        """The records take_respool gave are appended: their slots wait for that token."""
        if self._ring == NULL:
            return
        self._place_spooled(self.head, token)
        # spool_settle's cursor may have passed these slots while they were with Kafka.
        self._spool_cursor = self.head

    def respool_failed(self, bytes report not None):
        """The spool refused the records take_respool gave: each gets ``report``."""
        return self._fail_unplaced(report)

    def push_spooled(self, list records not None, Py_ssize_t i=0):
        """The forwarder's push (gateway.produce.edge): records[i:] as the spool reader gives
        them, ``(seq, topic, partition, key, value, headers, timestamp_ms)``, handed to Kafka
        in order while their topic is this core's; returns the index of the first record not
        taken (``stop_reason``: the window or librdkafka's queue is full, or
        SC_STOP_OTHER_TOPIC: the record is another topic's). Report types are not kept."""
        cdef Py_ssize_t n = PyList_GET_SIZE(records)
        cdef tuple rec
        cdef object topic, name = self.topic_name
        if self.broken:
            raise RuntimeError("the stream core is broken: it takes no more records")
        self.stop_reason = SC_STOP_NONE
        while i < n:
            if self.tail - self.head >= <uint64_t>self.capacity:
                self.stop_reason = SC_STOP_IN_FLIGHT
                return i
            rec = <tuple>PyList_GET_ITEM(records, i)
            topic = <object>PyTuple_GET_ITEM(rec, 1)
            if topic is not name and topic != name:
                self.stop_reason = SC_STOP_OTHER_TOPIC
                return i
            if not self._bad_partition(<object>PyTuple_GET_ITEM(rec, 2)) and self._hand(
                    <object>PyTuple_GET_ITEM(rec, 2), <object>PyTuple_GET_ITEM(rec, 3),
                    <object>PyTuple_GET_ITEM(rec, 4), <object>PyTuple_GET_ITEM(rec, 5),
                    <object>PyTuple_GET_ITEM(rec, 6), 0, 0) == 1:
                self.stop_reason = SC_STOP_KAFKA_QUEUE
                return i
            i += 1
        return i

    def take_settled(self, Py_ssize_t limit):
        """Take up to ``limit`` records of the completed prefix of the ring without formatting
        their reports: ``(taken, failures)``, failures a list of ``(position among those taken,
        report bytes)`` (the forwarder's way: most records succeed)."""
        cdef uint64_t s = self.head
        cdef uint64_t end
        cdef _Slot* slot
        cdef list failures = []
        cdef Py_ssize_t k = 0
        self.dirty = False
        if self._ring == NULL or limit <= 0:
            return 0, failures
        end = self.tail if self.tail - s <= <uint64_t>limit else s + <uint64_t>limit
        while s < end:
            slot = &self._ring[s & self._mask]
            if slot.state == _SC_FAILED:
                failures.append((k, <bytes>slot.report))
                Py_DECREF(<object>slot.report)
                slot.report = NULL
            elif slot.state != _SC_OK:
                break
            slot.state = _SC_FREE
            s += 1
            k += 1
        self._taken(s)
        return k, failures

    def error_report(self, int code, message):
        """A failure report in this core's format (a v3 report, or a v1/v2 offsets entry)."""
        return self._error_report(code, message)

    @property
    def producer(self):
        """The producer records are handed to (see rebind)."""
        return self._producer

    cdef bint _complete(self, uint32_t seq32, int32_t err, int32_t partition, int64_t offset,
                        int64_t timestamp) except -1:
        # One delivery report; True when a slot was completed.
        cdef _Slot* slot
        cdef bytes report
        if self.broken:
            self.late += 1
            return False
        if self._ring == NULL:
            self.orphans += 1
            return False
        slot = &self._ring[seq32 & self._mask]
        if slot.state != _SC_PENDING:
            self.orphans += 1
            return False
        if err == 0:
            slot.partition = partition
            # A resend the broker already had (its first answer was lost) is acknowledged with
            # no offset: reported as -1, Kafka's "unknown offset".
            slot.offset = offset if offset >= 0 else -1
            slot.timestamp = timestamp
            slot.state = _SC_OK
            self.pending -= 1
            self.ok += 1
            return True
        # The slot changes only once its report exists: a callback that raises leaves it
        # pending, for _break to fail.
        code, message = self._error_fn(err)
        report = self._error_report(code, message)
        self._fill_failed(slot, report)
        self.pending -= 1
        self._fail_fn(code, 1)
        return True

    cdef void _break(self) noexcept:
        # Every pending record gets the internal-error report; reports that come for them later
        # are ignored (counted in `late`). No Python callback runs here.
        cdef uint64_t s
        cdef _Slot* slot
        self.broken = True
        if self._ring == NULL:
            return
        s = self.head
        while s < self.tail:
            slot = &self._ring[s & self._mask]
            if slot.state == _SC_PENDING or slot.state == _SC_SPOOLING:
                self._fill_failed(slot, _SC_INTERNAL_REPORT)
                self.broken_failed += 1
            s += 1
        self.pending = 0
        self.spooling = 0

    def fail_pending(self):
        """Give up on this stream's reports after an internal error: every record still with
        the producer gets the internal-error report (50003) now, later reports for them are
        ignored, and push() takes no more records. Returns how many were failed."""
        cdef Py_ssize_t before = self.broken_failed
        self._break()
        return self.broken_failed - before

    @property
    def internal_report(self):
        return _SC_INTERNAL_REPORT

    cdef inline void _taken(self, uint64_t s) noexcept:
        self.head = s
        if s == self.tail and self._mask >= _SC_KEEP_SLOTS:
            # Empty after a burst: give the big ring back (the next record allocates anew).
            free(self._ring)
            self._ring = NULL
            self._mask = 0

    def take_ready(self):
        """Every report whose predecessors are all known, in order, as one bytes object."""
        return self._take_ready()

    cdef bytes _take_ready(self):
        # (take_ready() for C callers: the session's flush)
        cdef uint64_t s = self.head
        cdef uint64_t tail = self.tail
        cdef _Slot* slot
        cdef Py_ssize_t pos = 0, need, plen
        cdef bytes report
        cdef const char* prefix
        self.dirty = False
        if self._ring == NULL:
            return b""
        plen = PyBytes_GET_SIZE(self._prefix)
        prefix = PyBytes_AS_STRING(self._prefix)
        while s < tail:
            slot = &self._ring[s & self._mask]
            if slot.state == _SC_OK:
                need = pos + plen + _SC_MAX_REPORT
                if need > _sc_out_cap:
                    _sc_reserve(need)
                if self.mode == FORMAT_V3:
                    pos += _sc_format_v3(_sc_out + pos, prefix, plen, slot, &self._ts)
                else:
                    pos += _sc_format_offsets(_sc_out + pos, slot, self.mode)
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
        self._taken(s)
        if pos == 0:
            return b""
        out = _sc_out[:pos]
        if _sc_out_cap > _SC_KEEP_OUT:
            _sc_free_out()
        return out

    def take_outcomes(self):
        """The same prefix as take_ready, one Python value per record: a delivered record's
        ``(partition, offset, timestamp_ms, key_type, key_size, value_type, value_size)`` (a
        type is None when the record had no such field), a failed one's report bytes. For
        answers built in Python (records:batch, at most a few dozen records)."""
        cdef uint64_t s = self.head
        cdef _Slot* slot
        cdef list out = []
        self.dirty = False
        if self._ring == NULL:
            return out
        while s < self.tail:
            slot = &self._ring[s & self._mask]
            if slot.state == _SC_OK:
                out.append((slot.partition, slot.offset, slot.timestamp,
                            _SC_TYPE_NAMES[slot.key_type], slot.key_size,
                            _SC_TYPE_NAMES[slot.value_type], slot.value_size))
            elif slot.state == _SC_FAILED:
                out.append(<bytes>slot.report)
                Py_DECREF(<object>slot.report)
                slot.report = NULL
            else:
                break
            slot.state = _SC_FREE
            s += 1
        self._taken(s)
        return out

    def debug_info(self):
        return {"sink_id": self._sid, "head": self.head, "tail": self.tail,
                "pending": self.pending, "broken": self.broken,
                "slots": 0 if self._ring == NULL else self._mask + 1, "ok": self.ok,
                "failed": self.failed, "orphans": self.orphans}


# The report formats for Python callers.
REPORT_FORMAT_V3 = FORMAT_V3
STOP_OTHER_TOPIC = SC_STOP_OTHER_TOPIC  # push_spooled's stop_reason at another topic's record
REPORT_FORMAT_V1 = FORMAT_V1
REPORT_FORMAT_V2 = FORMAT_V2
