# RdProducer: a librdkafka producer driven from the event loop through librdkafka's C API, with
# no Python object per record on the delivery-report side (issue 4's compiled path, producer
# half). Docstrings live in gateway/_speedups.pyi; the declarations of the C API we call are in
# ext/rdkafka.pxd. The librdkafka library is the one bundled in the confluent-kafka wheel, so the
# process holds one librdkafka whichever client created a handle (setup.py links it by soname).
#
# Delivery reports: librdkafka calls cb_rdp_delivery (a C function, no GIL needed, no Python) from
# inside rd_kafka_poll() on the calling thread, once per record. It appends (msg_opaque, partition,
# offset, timestamp, error) to five parallel C arrays: the batch. The arrays grow by doubling up
# to max_reports; when the batch is full the callback calls rd_kafka_yield(), which makes
# librdkafka stop dispatching and keep the rest of the reports queued for the next poll (see
# rd_kafka_yield() in rdkafka.h). So the batch is bounded and no report is ever dropped.
#
# Wake-ups: librdkafka writes 8 bytes to our eventfd when an event (delivery report, error) is
# enqueued on the main queue while it is empty (rd_kafka_queue_io_event_enable(), rdkafka.h), so
# the loop can add_reader(event_fd) instead of polling on a timer. poll() reads the eventfd, then
# serves the whole queue, leaving it empty: the next event writes again. The queue is left
# non-empty in two cases, and then we write the eventfd ourselves: events queued before the fd
# was enabled (once, at creation), and a poll that stopped on a full batch.

from libc.stdint cimport int32_t, int64_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, strlen, strncpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport close as _rdp_close_fd, read as _rdp_read, write as _rdp_write
from cpython.buffer cimport PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES, PyBUF_WRITABLE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE

from rdkafka cimport *

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK
    int EFD_CLOEXEC

cdef enum:
    # First allocation of the report batch; it doubles up to max_reports.
    _RDP_INITIAL_REPORTS = 1024
    _RDP_MAX_REPORTS_LIMIT = 1 << 26
    # Recent error-callback events kept for take_errors(); older ones are counted, not kept.
    _RDP_ERROR_RING = 16
    _RDP_REASON_BYTES = 256
    # librdkafka's log lines kept for take_logs() between two polls; more are counted.
    _RDP_LOG_RING = 64
    _RDP_LOG_FAC_BYTES = 32
    _RDP_LOG_BYTES = 512
    _RDP_ERRSTR_BYTES = 512
    # A close() from __dealloc__ waits at most this long for outstanding records: dealloc runs
    # wherever the last reference goes, so it must not block long (nothing may block the event loop).
    _RDP_DEALLOC_FLUSH_MS = 1000
    # flush() serves the queue in slices so a deadline is honoured whatever arrives.
    _RDP_FLUSH_SLICE_MS = 100

# msg_opaque is a void*: a 64-bit record id needs 64-bit pointers.
if sizeof(void*) < sizeof(uint64_t):
    raise ImportError("gateway._speedups.RdProducer needs 64-bit pointers")

cdef uint64_t _rdp_one = 1  # the eventfd payload librdkafka writes (it copies it)


cdef struct _RdpError:
    int code
    char reason[_RDP_REASON_BYTES]


cdef struct _RdpLog:
    int level
    char fac[_RDP_LOG_FAC_BYTES]
    char text[_RDP_LOG_BYTES]


cdef struct _RdpState:
    # The batch: parallel arrays, `count` entries valid, `capacity` allocated.
    uint64_t* opaque
    int32_t* partition
    int64_t* offset
    int64_t* timestamp
    int32_t* err
    # Set only where err is not 0: a failed record's content (_RdpFailed, malloc'd: key,
    # value, headers, partition, timestamp) when keep_failed is set, NULL otherwise: the disk
    # spool takes it instead of a 50003 report (gateway.produce.edge). ReportRouter takes and
    # frees each one; `failed_kept` counts those of the batch (0: nothing to free).
    void** failed
    bint keep_failed
    Py_ssize_t failed_kept
    Py_ssize_t count
    Py_ssize_t capacity
    Py_ssize_t max_reports
    bint full               # the last serve stopped because the batch is full
    Py_ssize_t lost         # reports that found no slot: must stay 0 (a bug otherwise)
    # Error callback: a ring of the most recent events, and a sticky fatal flag.
    bint fatal
    unsigned long long errors_seen
    unsigned long long errors_taken
    _RdpError errors[_RDP_ERROR_RING]
    # Statistics callback: the latest JSON document (statistics.interval.ms), not yet taken.
    char* stats
    size_t stats_len
    # Log callback (log.queue: served inside rd_kafka_poll, on the polling thread): the lines
    # since the last take_logs(), at most _RDP_LOG_RING; `logs_lost` counts the others.
    _RdpLog logs[_RDP_LOG_RING]
    Py_ssize_t log_count
    unsigned long long logs_lost


cdef int _rdp_grow(_RdpState* st) noexcept nogil:
    # Doubles every column, up to max_reports; 0 if at the cap or out of memory (then the
    # callback yields and the reports wait in librdkafka's queue).
    cdef Py_ssize_t cap = st.capacity * 2
    cdef void* p
    if cap > st.max_reports:
        cap = st.max_reports
    if cap <= st.capacity:
        return 0
    # A column that grew while a later one failed stays bigger: harmless, capacity is the min.
    p = realloc(st.opaque, cap * sizeof(uint64_t))
    if p == NULL:
        return 0
    st.opaque = <uint64_t*>p
    p = realloc(st.partition, cap * sizeof(int32_t))
    if p == NULL:
        return 0
    st.partition = <int32_t*>p
    p = realloc(st.offset, cap * sizeof(int64_t))
    if p == NULL:
        return 0
    st.offset = <int64_t*>p
    p = realloc(st.timestamp, cap * sizeof(int64_t))
    if p == NULL:
        return 0
    st.timestamp = <int64_t*>p
    p = realloc(st.err, cap * sizeof(int32_t))
    if p == NULL:
        return 0
    st.err = <int32_t*>p
    p = realloc(st.failed, cap * sizeof(void*))
    if p == NULL:
        return 0
    st.failed = <void**>p
    st.capacity = cap
    return 1


cdef void _rdp_free_failed(_RdpState* st) noexcept nogil:
    # Failed records of the batch nobody took (no core, a core not spooling them). A batch
    # with none kept (every batch without the spool) costs nothing here.
    cdef Py_ssize_t i
    if st.failed_kept == 0:
        return
    for i in range(st.count):
        if st.err[i] != 0 and st.failed[i] != NULL:
            free(st.failed[i])
            st.failed[i] = NULL
    st.failed_kept = 0


cdef struct _RdpFailed:
    # A failed record's content, one malloc'd block: this head, then the key bytes, the value
    # bytes, and each header as (size_t name length, name, Py_ssize_t value length or -1 for
    # null, value).
    int64_t timestamp
    int32_t partition
    Py_ssize_t key_len       # -1: no key
    Py_ssize_t value_len     # -1: null value
    Py_ssize_t header_count
    Py_ssize_t header_bytes


cdef void* _rdp_copy_failed(const rd_kafka_message_t* msg, int64_t timestamp) noexcept nogil:
    # NULL when out of memory: the record then gets its failure report, as without the spool.
    cdef rd_kafka_headers_t* hdrs = NULL
    cdef size_t n = 0, k, size, name_len
    cdef const char* name
    cdef const void* value
    cdef Py_ssize_t hbytes = 0, vl
    cdef Py_ssize_t klen = -1 if msg.key == NULL else <Py_ssize_t>msg.key_len
    cdef Py_ssize_t plen = -1 if msg.payload == NULL else <Py_ssize_t>msg.len
    cdef char* block
    cdef char* o
    cdef _RdpFailed* f
    if rd_kafka_message_headers(msg, &hdrs) == 0 and hdrs != NULL:
        n = rd_kafka_header_cnt(hdrs)
        for k in range(n):
            if rd_kafka_header_get_all(hdrs, k, &name, &value, &size) != 0:
                return NULL
            hbytes += <Py_ssize_t>(sizeof(size_t) + strlen(name) + sizeof(Py_ssize_t))
            if value != NULL:
                hbytes += <Py_ssize_t>size
    block = <char*>malloc(sizeof(_RdpFailed) + (klen if klen > 0 else 0)
                          + (plen if plen > 0 else 0) + hbytes)
    if block == NULL:
        return NULL
    f = <_RdpFailed*>block
    f.timestamp = timestamp
    f.partition = msg.partition
    f.key_len = klen
    f.value_len = plen
    f.header_count = <Py_ssize_t>n
    f.header_bytes = hbytes
    o = block + sizeof(_RdpFailed)
    if klen > 0:
        memcpy(o, msg.key, <size_t>klen)
        o += klen
    if plen > 0:
        memcpy(o, msg.payload, <size_t>plen)
        o += plen
    for k in range(n):
        rd_kafka_header_get_all(hdrs, k, &name, &value, &size)
        name_len = strlen(name)
        memcpy(o, &name_len, sizeof(size_t))
        o += sizeof(size_t)
        memcpy(o, name, name_len)
        o += name_len
        vl = -1 if value == NULL else <Py_ssize_t>size
        memcpy(o, &vl, sizeof(Py_ssize_t))
        o += sizeof(Py_ssize_t)
        if vl > 0:
            memcpy(o, value, <size_t>vl)
            o += vl
    return block


cdef object _rdp_failed_record(void* block):
    # The splitter's item shape (gateway/produce/items.py) of a failed record, for the spool:
    # (0, partition, key, value, headers, timestamp_ms, None, None).
    cdef _RdpFailed* f = <_RdpFailed*>block
    cdef char* o = <char*>block + sizeof(_RdpFailed)
    cdef object key = None, value = None, headers = None, hv
    cdef size_t name_len
    cdef Py_ssize_t vl, k
    if f.key_len >= 0:
        key = o[:f.key_len]
        o += f.key_len
    if f.value_len >= 0:
        value = o[:f.value_len]
        o += f.value_len
    if f.header_count:
        headers = []
        for k in range(f.header_count):
            memcpy(&name_len, o, sizeof(size_t))
            o += sizeof(size_t)
            hname = o[:name_len].decode("utf-8", "surrogateescape")
            o += name_len
            memcpy(&vl, o, sizeof(Py_ssize_t))
            o += sizeof(Py_ssize_t)
            if vl >= 0:
                hv = o[:vl]
                o += vl
            else:
                hv = None
            headers.append((hname, hv))
    # (no timestamp known: 0, the spool's "now")
    return (0, f.partition, key, value, headers, f.timestamp if f.timestamp > 0 else 0, None,
            None)


cdef void cb_rdp_delivery(rd_kafka_t* rk, const rd_kafka_message_t* msg,
                          void* opaque) noexcept nogil:
    # librdkafka's dr_msg_cb, once per record, inside rd_kafka_poll() on the polling thread.
    cdef _RdpState* st = <_RdpState*>opaque
    cdef Py_ssize_t i = st.count
    cdef rd_kafka_timestamp_type_t tstype
    if i >= st.capacity:
        # Unreachable: we yield as soon as the last slot is taken. Count it so tests notice.
        st.lost += 1
        st.full = True
        rd_kafka_yield(rk)
        return
    st.opaque[i] = <uint64_t><uintptr_t>msg._private
    st.partition[i] = msg.partition
    st.offset[i] = msg.offset
    st.timestamp[i] = rd_kafka_message_timestamp(msg, &tstype)
    st.err[i] = msg.err
    if msg.err != 0:
        st.failed[i] = NULL
        if st.keep_failed:
            st.failed[i] = _rdp_copy_failed(msg, st.timestamp[i])
            if st.failed[i] != NULL:
                st.failed_kept += 1
    i += 1
    st.count = i
    if i == st.capacity and not _rdp_grow(st):
        # Keep the remaining reports in librdkafka's queue until the next poll.
        st.full = True
        rd_kafka_yield(rk)


cdef char* _rdp_error_slot(_RdpState* st, int code) noexcept nogil:
    # The next entry of the error ring, for an event `code`: its reason buffer
    # (_RDP_REASON_BYTES, emptied), which the caller fills.
    cdef _RdpError* e = &st.errors[st.errors_seen % _RDP_ERROR_RING]
    e.code = code
    e.reason[0] = 0
    st.errors_seen += 1
    return e.reason


cdef void cb_rdp_error(rd_kafka_t* rk, int err, const char* reason,
                       void* opaque) noexcept nogil:
    # librdkafka's error_cb, inside rd_kafka_poll(). Most errors are informational (librdkafka
    # retries by itself); RD_KAFKA_RESP_ERR__FATAL means the producer is unusable
    # (rd_kafka_fatal_error() has the underlying error).
    cdef _RdpState* st = <_RdpState*>opaque
    cdef char* slot = _rdp_error_slot(st, err)
    if reason != NULL:
        strncpy(slot, reason, _RDP_REASON_BYTES - 1)
        slot[_RDP_REASON_BYTES - 1] = 0
    if err == RD_KAFKA_RESP_ERR__FATAL:
        st.fatal = True


cdef int cb_rdp_stats(rd_kafka_t* rk, char* json, size_t json_len, void* opaque) noexcept nogil:
    # librdkafka's stats_cb, inside rd_kafka_poll(): keep the latest document only (an untaken
    # older one is replaced). Returning 0 lets librdkafka free `json`.
    cdef _RdpState* st = <_RdpState*>opaque
    cdef char* copy = <char*>malloc(json_len + 1)
    if copy == NULL:
        return 0
    memcpy(copy, json, json_len)
    copy[json_len] = 0
    free(st.stats)
    st.stats = copy
    st.stats_len = json_len
    return 0


cdef void cb_rdp_log(const rd_kafka_t* rk, int level, const char* fac,
                     const char* buf) noexcept nogil:
    # librdkafka's log_cb. With log.queue and the log queue forwarded to the main queue, it runs
    # inside rd_kafka_poll() on the polling thread (never from librdkafka's own threads): the
    # line is kept for take_logs(), which rate-limits what reaches the gateway's log.
    cdef _RdpState* st = <_RdpState*>rd_kafka_opaque(rk)
    cdef _RdpLog* e
    if st == NULL:
        return
    if st.log_count >= _RDP_LOG_RING:
        st.logs_lost += 1
        return
    e = &st.logs[st.log_count]
    e.level = level
    e.fac[0] = 0
    e.text[0] = 0
    if fac != NULL:
        strncpy(e.fac, fac, _RDP_LOG_FAC_BYTES - 1)
        e.fac[_RDP_LOG_FAC_BYTES - 1] = 0
    if buf != NULL:
        strncpy(e.text, buf, _RDP_LOG_BYTES - 1)
        e.text[_RDP_LOG_BYTES - 1] = 0
    st.log_count += 1


cdef inline int64_t _rdp_now_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000


cdef int _rdp_serve_until_empty(rd_kafka_t* rk, _RdpState* st, int timeout_ms,
                                bint discard) noexcept nogil:
    # Our flush: serve the main queue until nothing is outstanding, the deadline passes, or
    # (unless `discard`) the batch is full. Not rd_kafka_flush(): that one polls until done and
    # would keep calling our callback after it yielded on a full batch.
    cdef int64_t deadline = _rdp_now_ms() + (timeout_ms if timeout_ms > 0 else 0)
    cdef int64_t left_ms
    while rd_kafka_outq_len(rk) > 0:
        if st.full:
            if not discard:
                break
            st.count = 0
            st.full = False
        left_ms = deadline - _rdp_now_ms()
        if left_ms <= 0:
            break
        rd_kafka_poll(rk, <int>(left_ms if left_ms < _RDP_FLUSH_SLICE_MS else _RDP_FLUSH_SLICE_MS))
    return rd_kafka_outq_len(rk)


cdef bytes _rdp_conf_value(object name, object value):
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if isinstance(value, str):
        return (<str>value).encode("utf-8")
    if isinstance(value, (int, float)):
        return str(value).encode("ascii")
    raise TypeError(
        f"librdkafka property {name!r}: a {type(value).__name__} value; expected str, int, "
        f"float or bool (callbacks are not librdkafka properties)")


cdef rd_kafka_conf_t* _rdp_new_conf(list items, tuple fixed) except NULL:
    # A librdkafka configuration from the caller's (name, value) pairs, then our `fixed`
    # (name, value) bytes pairs, set last so the caller cannot replace them. ValueError naming
    # a property librdkafka refuses, TypeError for a name or value of the wrong type.
    cdef char errstr[_RDP_ERRSTR_BYTES]
    cdef rd_kafka_conf_t* conf = rd_kafka_conf_new()
    cdef bytes bname
    cdef bytes bvalue
    try:
        for name, value in items:
            if not isinstance(name, str):
                raise TypeError(f"librdkafka property names are str, not {type(name).__name__}")
            bname = (<str>name).encode("utf-8")
            bvalue = _rdp_conf_value(name, value)
            errstr[0] = 0
            if rd_kafka_conf_set(conf, bname, bvalue, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK:
                raise ValueError(
                    f"librdkafka property {name!r}={value!r}: "
                    f"{errstr.decode('utf-8', 'replace')}")
        for bname, bvalue in fixed:
            errstr[0] = 0
            if rd_kafka_conf_set(conf, bname, bvalue, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK:
                raise ValueError(
                    f"{bname.decode('ascii')}: {errstr.decode('utf-8', 'replace')}")
    except BaseException:
        rd_kafka_conf_destroy(conf)
        raise
    return conf


cdef list _rdp_take_errors(_RdpState* st):
    # The error ring's events since the last call, oldest first: [(code, reason), ...].
    cdef unsigned long long first = st.errors_taken
    cdef unsigned long long i
    cdef _RdpError* e
    if st.errors_seen - first > _RDP_ERROR_RING:
        first = st.errors_seen - _RDP_ERROR_RING
    out = []
    for i in range(first, st.errors_seen):
        e = &st.errors[i % _RDP_ERROR_RING]
        out.append((e.code, e.reason.decode("utf-8", "replace")))
    st.errors_taken = st.errors_seen
    return out


cdef tuple _rdp_take_logs(_RdpState* st):
    # The log lines since the last call and how many did not fit: ([(level, fac, text)], lost).
    cdef Py_ssize_t i
    cdef _RdpLog* e
    out = []
    for i in range(st.log_count):
        e = &st.logs[i]
        out.append((e.level, e.fac.decode("utf-8", "replace"), e.text.decode("utf-8", "replace")))
    st.log_count = 0
    lost = st.logs_lost
    st.logs_lost = 0
    return out, lost


cdef rd_kafka_headers_t* _rdp_headers(object headers) except NULL:
    # [(name, value), ...] -> a librdkafka header list (copied). name: str (UTF-8) or bytes;
    # value: bytes or None (a null header value).
    cdef Py_ssize_t n = len(headers)
    cdef rd_kafka_headers_t* hdrs = rd_kafka_headers_new(<size_t>n)
    cdef object name
    cdef object value
    cdef bytes bname
    cdef const char* vp
    cdef Py_ssize_t vl
    try:
        for item in headers:
            name, value = item
            if isinstance(name, str):
                bname = (<str>name).encode("utf-8")
            elif PyBytes_Check(name):
                bname = <bytes>name
            else:
                raise TypeError(f"header name must be str or bytes, not {type(name).__name__}")
            if value is None:
                vp = NULL
                vl = 0
            elif PyBytes_Check(value):
                vp = PyBytes_AS_STRING(value)
                vl = PyBytes_GET_SIZE(value)
            else:
                raise TypeError(
                    f"header value must be bytes or None, not {type(value).__name__}")
            rd_kafka_header_add(hdrs, PyBytes_AS_STRING(bname), PyBytes_GET_SIZE(bname), vp, vl)
    except BaseException:
        rd_kafka_headers_destroy(hdrs)
        raise
    return hdrs


@cython.final
cdef class RdTopic:
    # A librdkafka topic handle; owned (and destroyed) by its RdProducer, which clears both
    # fields when it closes. `_owner` is borrowed, for identity only: a strong reference would
    # make a cycle (producer -> topic cache -> topic -> producer) and keep a dropped producer,
    # its threads and sockets alive until the cyclic GC runs.
    cdef rd_kafka_topic_t* _rkt
    cdef void* _owner
    cdef readonly str name

    def __init__(self, *args, **kwargs):
        raise TypeError("RdTopic objects come from RdProducer.topic(name)")

    def __repr__(self):
        return f"<RdTopic {self.name!r}>"


@cython.final
cdef class _RdpColumn:
    # One column of the current batch, exported read-only through the buffer protocol. While
    # any view is alive the producer refuses to start a new batch (BufferError), so a view
    # never sees a reallocated or overwritten array.
    cdef ProducerBase _owner
    cdef int _which
    cdef Py_ssize_t _shape[1]
    cdef Py_ssize_t _strides[1]

    def __getbuffer__(self, Py_buffer* view, int flags):
        cdef _RdpState* st = self._owner._st
        cdef void* buf
        cdef Py_ssize_t itemsize
        cdef char* fmt
        if flags & PyBUF_WRITABLE:
            raise BufferError("delivery report columns are read-only")
        if self._which == 0:
            buf, itemsize, fmt = <void*>st.opaque, 8, b"Q"
        elif self._which == 1:
            buf, itemsize, fmt = <void*>st.partition, 4, b"i"
        elif self._which == 2:
            buf, itemsize, fmt = <void*>st.offset, 8, b"q"
        elif self._which == 3:
            buf, itemsize, fmt = <void*>st.timestamp, 8, b"q"
        else:
            buf, itemsize, fmt = <void*>st.err, 4, b"i"
        self._shape[0] = st.count
        self._strides[0] = itemsize
        view.buf = buf
        view.obj = self
        view.len = st.count * itemsize
        view.readonly = 1
        view.itemsize = itemsize
        view.format = fmt if flags & PyBUF_FORMAT else NULL
        view.ndim = 1
        view.shape = self._shape if flags & PyBUF_ND else NULL
        view.strides = self._strides if flags & PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL
        self._owner._views += 1

    def __releasebuffer__(self, Py_buffer* view):
        self._owner._views -= 1


cdef class ProducerBase:
    # The producer interface of StreamCore and ReportRouter (stream.pxi). A record is handed over
    # with produce_record(); its delivery report lands in the batch `_st` (five C arrays) until
    # the next poll, where ReportRouter.dispatch() reads it. RdProducer implements it on
    # librdkafka; a test double implements produce_record() in a Python subclass (cpdef: the C
    # caller's vtable call reaches the override) and adds reports with add_report(), so the
    # compiled code runs one path whatever the producer.
    cdef _RdpState* _st
    cdef Py_ssize_t _views
    cdef dict _failed_items   # test doubles' failed records by batch index (add_report)

    def __cinit__(self, *args, **kwargs):
        self._st = <_RdpState*>calloc(1, sizeof(_RdpState))
        if self._st == NULL:
            raise MemoryError()

    def __init__(self, *, max_reports=65536):
        cdef _RdpState* st = self._st
        cdef Py_ssize_t cap
        if st.opaque != NULL:
            raise RuntimeError(f"{type(self).__name__}.__init__ called twice")
        if not 1 <= max_reports <= _RDP_MAX_REPORTS_LIMIT:
            raise ValueError(f"max_reports must be between 1 and {_RDP_MAX_REPORTS_LIMIT}")
        cap = min(<Py_ssize_t>max_reports, <Py_ssize_t>_RDP_INITIAL_REPORTS)
        st.opaque = <uint64_t*>malloc(cap * sizeof(uint64_t))
        st.partition = <int32_t*>malloc(cap * sizeof(int32_t))
        st.offset = <int64_t*>malloc(cap * sizeof(int64_t))
        st.timestamp = <int64_t*>malloc(cap * sizeof(int64_t))
        st.err = <int32_t*>malloc(cap * sizeof(int32_t))
        st.failed = <void**>calloc(cap, sizeof(void*))
        if (st.opaque == NULL or st.partition == NULL or st.offset == NULL
                or st.timestamp == NULL or st.err == NULL or st.failed == NULL):
            raise MemoryError()  # __dealloc__ frees what was allocated
        st.capacity = cap
        st.max_reports = max_reports

    def __dealloc__(self):
        cdef _RdpState* st = self._st
        if st != NULL:
            _rdp_free_failed(st)
            free(st.failed)
            free(st.opaque)
            free(st.partition)
            free(st.offset)
            free(st.timestamp)
            free(st.err)
            free(st.stats)
            free(st)
            self._st = NULL

    cpdef int produce_record(self, object topic, int32_t partition, object key, object value,
                             object headers, int64_t timestamp_ms,
                             uint64_t opaque_id) except? -32768:
        raise NotImplementedError

    def produce(self, topic, int32_t partition, key, value, headers, int64_t timestamp_ms,
                uint64_t opaque_id):
        return self.produce_record(topic, partition, key, value, headers, timestamp_ms,
                                   opaque_id)

    def topic(self, str name not None):
        return name

    cdef inline int _new_batch(self) except -1:
        if self._views:
            raise BufferError(
                "delivery report views are still alive: release them before the next batch")
        _rdp_free_failed(self._st)
        if self._failed_items:
            self._failed_items.clear()
        self._st.count = 0
        self._st.full = False
        return 0

    def new_batch(self):
        self._new_batch()

    @property
    def keep_failed(self):
        """Keep a failed record's content for the disk spool (take_failed)."""
        return self._st.keep_failed

    @keep_failed.setter
    def keep_failed(self, bint value):
        self._st.keep_failed = value

    cdef object _take_failed(self, Py_ssize_t i):
        # The failed record i of the batch in the splitter's item shape, or None (not kept);
        # its block is freed.
        cdef _RdpState* st = self._st
        cdef void* block = st.failed[i]
        if block == NULL:
            return self._failed_items.pop(i, None) if self._failed_items else None
        st.failed[i] = NULL
        try:
            return _rdp_failed_record(block)
        finally:
            free(block)

    def add_report(self, uint64_t opaque_id, int32_t partition, int64_t offset,
                   int64_t timestamp, int32_t err, failed_record=None):
        """A report in the batch (test doubles). ``failed_record``: a failed record's content
        as the disk spool takes it (the splitter's item shape), when ``keep_failed`` is set."""
        cdef _RdpState* st = self._st
        cdef Py_ssize_t i = st.count
        if failed_record is not None and err != 0 and st.keep_failed:
            if self._failed_items is None:
                self._failed_items = {}
            self._failed_items[i] = failed_record
        if self._views:
            raise BufferError("delivery report views are still alive")
        if i >= st.capacity and not _rdp_grow(st):
            raise OverflowError(f"the report batch is full ({st.capacity} reports)")
        st.opaque[i] = opaque_id
        st.partition[i] = partition
        st.offset[i] = offset
        st.timestamp[i] = timestamp
        st.err[i] = err
        st.failed[i] = NULL  # (a test double's failed record is in _failed_items)
        st.count = i + 1

    @property
    def reports_ready(self):
        return self._st.count

    @property
    def lost_reports(self):
        return self._st.lost

    def report(self, Py_ssize_t i):
        cdef _RdpState* st = self._st
        if not 0 <= i < st.count:
            raise IndexError(f"report {i} not in the batch of {st.count}")
        return (st.opaque[i], st.partition[i], st.offset[i], st.timestamp[i], st.err[i])

    def reports(self):
        cdef _RdpColumn c
        cols = []
        for which in range(5):
            c = _RdpColumn.__new__(_RdpColumn)
            c._owner = self
            c._which = which
            cols.append(memoryview(c))
        return tuple(cols)


@cython.final
cdef class RdProducer(ProducerBase):
    cdef rd_kafka_t* _rk
    cdef rd_kafka_queue_t* _mainq
    cdef int _efd
    # Topic handles, destroyed before the producer (rdkafka.h: destroy topics, then rk).
    cdef rd_kafka_topic_t** _rkts
    cdef Py_ssize_t _n_rkts
    cdef Py_ssize_t _cap_rkts
    cdef dict _topics

    ERR_NO_ERROR = RD_KAFKA_RESP_ERR_NO_ERROR
    ERR_QUEUE_FULL = RD_KAFKA_RESP_ERR__QUEUE_FULL
    ERR_MSG_TIMED_OUT = RD_KAFKA_RESP_ERR__MSG_TIMED_OUT
    ERR_PURGE_QUEUE = RD_KAFKA_RESP_ERR__PURGE_QUEUE
    ERR_PURGE_INFLIGHT = RD_KAFKA_RESP_ERR__PURGE_INFLIGHT
    ERR_FATAL = RD_KAFKA_RESP_ERR__FATAL
    ERR_UNKNOWN_PARTITION = RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION
    ERR_UNKNOWN_TOPIC = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC
    ERR_INVALID_ARG = RD_KAFKA_RESP_ERR__INVALID_ARG
    ERR_STATE = RD_KAFKA_RESP_ERR__STATE
    ERR_MSG_SIZE_TOO_LARGE = RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
    PARTITION_UA = RD_KAFKA_PARTITION_UA

    def __cinit__(self, *args, **kwargs):
        self._efd = -1
        self._topics = {}

    def __init__(self, config, *, max_reports=65536):
        cdef char errstr[_RDP_ERRSTR_BYTES]
        cdef rd_kafka_conf_t* conf
        cdef rd_kafka_t* rk
        cdef _RdpState* st = self._st
        if self._rk != NULL:
            raise RuntimeError("RdProducer.__init__ called twice")
        items = list(config.items())  # a mapping; iterated once, before anything is created
        ProducerBase.__init__(self, max_reports=max_reports)

        # log.queue (set after the caller's properties, so they cannot replace it): librdkafka's
        # log lines are served by poll() on the loop's thread (cb_rdp_log), not printed by its
        # own threads to stderr.
        conf = _rdp_new_conf(items, ((b"log.queue", b"true"),))
        rd_kafka_conf_set_log_cb(conf, cb_rdp_log)
        rd_kafka_conf_set_dr_msg_cb(conf, cb_rdp_delivery)
        rd_kafka_conf_set_error_cb(conf, cb_rdp_error)
        rd_kafka_conf_set_stats_cb(conf, cb_rdp_stats)
        rd_kafka_conf_set_opaque(conf, <void*>st)

        self._efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self._efd < 0:
            rd_kafka_conf_destroy(conf)
            raise OSError("eventfd() failed")

        errstr[0] = 0
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))
        if rk == NULL:
            # rd_kafka_new() takes the conf only on success.
            rd_kafka_conf_destroy(conf)
            _rdp_close_fd(self._efd)
            self._efd = -1
            raise ValueError(
                f"librdkafka refused the producer configuration: "
                f"{errstr.decode('utf-8', 'replace')}")
        self._rk = rk
        self._mainq = rd_kafka_queue_get_main(rk)
        rd_kafka_set_log_queue(rk, NULL)  # the log lines go to the main queue, served by poll()
        rd_kafka_queue_io_event_enable(self._mainq, self._efd, &_rdp_one, sizeof(_rdp_one))
        # librdkafka writes the fd when an event lands on an EMPTY queue; events queued before
        # this point (e.g. a refused first connection) would never wake the loop. One wake-up
        # now makes the first poll() serve them.
        _rdp_write(self._efd, &_rdp_one, sizeof(_rdp_one))

    def __dealloc__(self):
        # Runs before ProducerBase.__dealloc__ frees the batch, which the shutdown still fills.
        if self._rk != NULL:
            self._shutdown(_RDP_DEALLOC_FLUSH_MS)
        if self._efd >= 0:
            _rdp_close_fd(self._efd)
            self._efd = -1
        free(self._rkts)

    # ------------------------------------------------------------ lifecycle

    cdef inline rd_kafka_t* _live(self) except NULL:
        if self._rk == NULL:
            raise RuntimeError("the producer is closed")
        return self._rk

    cdef int _shutdown(self, int timeout_ms) noexcept:
        # Returns what librdkafka still held at the deadline (records, which get no report,
        # and unserved events). __dealloc__ calls it: no Python attribute is needed.
        cdef rd_kafka_t* rk = self._rk
        cdef _RdpState* st = self._st
        cdef int left
        cdef Py_ssize_t i
        if self._mainq != NULL:
            # No more writes to our eventfd (it is closed below and its number may be reused).
            rd_kafka_queue_io_event_enable(self._mainq, -1, NULL, 0)
            rd_kafka_queue_destroy(self._mainq)
            self._mainq = NULL
        with nogil:
            left = _rdp_serve_until_empty(rk, st, timeout_ms, True)
            if left:
                # Their reports would be discarded with the queue anyway; purging first spares
                # rd_kafka_destroy() any wait on them.
                rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT
                               | RD_KAFKA_PURGE_F_NON_BLOCKING)
        st.count = 0
        st.full = False
        if self._topics is not None:
            for t in self._topics.values():
                (<RdTopic>t)._rkt = NULL
                (<RdTopic>t)._owner = NULL
            self._topics.clear()
        for i in range(self._n_rkts):
            rd_kafka_topic_destroy(self._rkts[i])
        self._n_rkts = 0
        self._rk = NULL
        with nogil:
            rd_kafka_destroy(rk)
        return left

    def close(self, int timeout_ms=5000):
        if self._rk == NULL:
            return 0
        if self._views:
            raise BufferError("delivery report views are still alive: release them first")
        left = self._shutdown(timeout_ms)
        if self._efd >= 0:
            _rdp_close_fd(self._efd)
            self._efd = -1
        return left

    @property
    def closed(self):
        return self._rk == NULL

    @property
    def event_fd(self):
        return self._efd

    def __len__(self):
        if self._rk == NULL:
            return 0
        return rd_kafka_outq_len(self._rk)

    # ------------------------------------------------------------ topics

    def topic(self, str name not None):
        cdef RdTopic t = self._topics.get(name)
        cdef rd_kafka_t* rk
        cdef rd_kafka_topic_t* rkt
        cdef bytes bname
        cdef void* p
        if t is not None:
            return t
        rk = self._live()
        bname = name.encode("utf-8")
        if self._n_rkts == self._cap_rkts:
            p = realloc(self._rkts, (self._cap_rkts * 2 + 4) * sizeof(rd_kafka_topic_t*))
            if p == NULL:
                raise MemoryError()
            self._rkts = <rd_kafka_topic_t**>p
            self._cap_rkts = self._cap_rkts * 2 + 4
        rkt = rd_kafka_topic_new(rk, bname, NULL)
        if rkt == NULL:
            err = rd_kafka_last_error()
            raise ValueError(
                f"topic {name!r}: {rd_kafka_err2str(err).decode('utf-8', 'replace')}")
        self._rkts[self._n_rkts] = rkt
        self._n_rkts += 1
        t = RdTopic.__new__(RdTopic)
        t._rkt = rkt
        t._owner = <void*>self
        t.name = name
        self._topics[name] = t
        return t

    # ------------------------------------------------------------ produce

    cdef rd_kafka_resp_err_t produce_c(self, rd_kafka_topic_t* rkt, int32_t partition,
                                       const char* key, size_t key_len,
                                       const char* value, size_t value_len,
                                       rd_kafka_headers_t* headers, int64_t timestamp_ms,
                                       uint64_t opaque_id) noexcept nogil:
        # The per-record entry point for Cython code of this module (a future fused splitter):
        # no Python object. key/value NULL = null; RD_KAFKA_MSG_F_COPY, so the bytes need only
        # live for the call. `headers` passes to librdkafka on success only (rdkafka.h,
        # RD_KAFKA_V_HEADERS): on an error the caller still owns it. timestamp_ms 0 = now.
        # Every vararg has the C type librdkafka's va_arg reads (int for tags and flags, int32_t
        # partition, void*/size_t pairs, int64_t timestamp).
        if self._rk == NULL:
            return RD_KAFKA_RESP_ERR__STATE
        return rd_kafka_producev(
            self._rk,
            <int>RD_KAFKA_VTYPE_RKT, rkt,
            <int>RD_KAFKA_VTYPE_PARTITION, partition,
            <int>RD_KAFKA_VTYPE_MSGFLAGS, <int>RD_KAFKA_MSG_F_COPY,
            <int>RD_KAFKA_VTYPE_KEY, <void*>key, key_len,
            <int>RD_KAFKA_VTYPE_VALUE, <void*>value, value_len,
            <int>RD_KAFKA_VTYPE_OPAQUE, <void*><uintptr_t>opaque_id,
            <int>RD_KAFKA_VTYPE_TIMESTAMP, timestamp_ms,
            <int>RD_KAFKA_VTYPE_HEADERS, headers,
            <int>RD_KAFKA_VTYPE_END)

    cdef inline RdTopic _topic_arg(self, object topic):
        cdef RdTopic t
        if type(topic) is RdTopic:
            t = <RdTopic>topic
            if t._owner != <void*>self:
                raise ValueError(f"{topic!r} belongs to another (or a closed) producer")
            return t
        return self.topic(topic)

    cpdef int produce_record(self, object topic, int32_t partition, object key, object value,
                             object headers, int64_t timestamp_ms,
                             uint64_t opaque_id) except? -32768:
        # The per-record call of StreamCore.push(): `topic` is this producer's RdTopic (a name
        # is looked up), key/value bytes or None, headers a list of (name, value) or None.
        cdef RdTopic t
        cdef const char* kp = NULL
        cdef const char* vp = NULL
        cdef size_t kl = 0
        cdef size_t vl = 0
        cdef rd_kafka_headers_t* hdrs = NULL
        cdef rd_kafka_resp_err_t err
        if self._rk == NULL:
            raise RuntimeError("the producer is closed")
        if type(topic) is RdTopic and (<RdTopic>topic)._owner == <void*>self:
            t = <RdTopic>topic
        else:
            t = self._topic_arg(topic)
        if key is not None:
            if not PyBytes_Check(key):
                raise TypeError(f"key must be bytes or None, not {type(key).__name__}")
            kp = PyBytes_AS_STRING(key)
            kl = <size_t>PyBytes_GET_SIZE(key)
        if value is not None:
            if not PyBytes_Check(value):
                raise TypeError(f"value must be bytes or None, not {type(value).__name__}")
            vp = PyBytes_AS_STRING(value)
            vl = <size_t>PyBytes_GET_SIZE(value)
        if headers:
            hdrs = _rdp_headers(headers)
        err = self.produce_c(t._rkt, partition, kp, kl, vp, vl, hdrs, timestamp_ms, opaque_id)
        if err and hdrs != NULL:
            rd_kafka_headers_destroy(hdrs)
        return err

    def _produce_many(self, topic, int32_t partition, value, Py_ssize_t count,
                      uint64_t first_opaque_id):
        # Benchmark helper: `count` records with the same value (opaque ids first_opaque_id,
        # +1, ...) in a C loop, i.e. what a fused splitter would cost per record. Stops at the
        # first error; returns (records produced, that error or 0).
        cdef RdTopic t
        cdef const char* vp = NULL
        cdef size_t vl = 0
        cdef Py_ssize_t i
        cdef rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR
        self._live()
        t = self._topic_arg(topic)
        if value is not None:
            if not PyBytes_Check(value):
                raise TypeError(f"value must be bytes or None, not {type(value).__name__}")
            vp = PyBytes_AS_STRING(value)
            vl = <size_t>PyBytes_GET_SIZE(value)
        for i in range(count):
            err = self.produce_c(t._rkt, partition, NULL, 0, vp, vl, NULL, 0,
                                 first_opaque_id + <uint64_t>i)
            if err:
                return i, err
        return count, 0

    # ------------------------------------------------------------ delivery reports

    def poll(self):
        cdef rd_kafka_t* rk = self._live()
        cdef _RdpState* st = self._st
        cdef uint64_t drained
        self._new_batch()
        # Read the eventfd first: an event enqueued after the serve below writes it again.
        _rdp_read(self._efd, &drained, sizeof(drained))
        rd_kafka_poll(rk, 0)
        if st.full:
            # librdkafka kept the rest of the reports; it will not write the eventfd for them.
            _rdp_write(self._efd, &_rdp_one, sizeof(_rdp_one))
        return st.count

    def flush(self, int timeout_ms):
        cdef rd_kafka_t* rk = self._live()
        cdef _RdpState* st = self._st
        cdef int left
        self._new_batch()
        with nogil:
            left = _rdp_serve_until_empty(rk, st, timeout_ms, False)
        if st.full:
            _rdp_write(self._efd, &_rdp_one, sizeof(_rdp_one))
        return left

    def purge(self, bint in_queue=True, bint in_flight=True, bint blocking=False):
        cdef rd_kafka_t* rk = self._live()
        cdef int flags = 0
        cdef rd_kafka_resp_err_t err
        if in_queue:
            flags |= RD_KAFKA_PURGE_F_QUEUE
        if in_flight:
            flags |= RD_KAFKA_PURGE_F_INFLIGHT
        if not blocking:
            flags |= RD_KAFKA_PURGE_F_NON_BLOCKING
        err = rd_kafka_purge(rk, flags)
        if err:
            raise RuntimeError(f"purge failed: {rd_kafka_err2str(err).decode('utf-8', 'replace')}")

    @property
    def batch_full(self):
        return self._st.full

    # ------------------------------------------------------------ errors

    @property
    def fatal(self):
        return self._st.fatal

    def fatal_error(self):
        cdef char errstr[_RDP_ERRSTR_BYTES]
        cdef rd_kafka_resp_err_t err
        if self._rk == NULL:
            return None
        errstr[0] = 0
        err = rd_kafka_fatal_error(self._rk, errstr, sizeof(errstr))
        if err == RD_KAFKA_RESP_ERR_NO_ERROR:
            return None
        return (err, errstr.decode("utf-8", "replace"))

    @property
    def error_count(self):
        return self._st.errors_seen

    def take_errors(self):
        return _rdp_take_errors(self._st)

    @property
    def log_count(self):
        return self._st.log_count

    def take_logs(self):
        return _rdp_take_logs(self._st)

    def take_stats(self):
        cdef _RdpState* st = self._st
        cdef bytes doc
        if st.stats == NULL:
            return None
        doc = st.stats[:st.stats_len]
        free(st.stats)
        st.stats = NULL
        st.stats_len = 0
        return doc.decode("utf-8", "replace")

    def _test_fatal_error(self, int code, str reason not None):
        # rd_kafka_test_fatal_error(): makes an idempotent producer fail as a broker would.
        cdef bytes breason = reason.encode("utf-8")
        return rd_kafka_test_fatal_error(self._live(), code, breason)

    @staticmethod
    def error_name(int code):
        return rd_kafka_err2name(code).decode("utf-8", "replace")

    @staticmethod
    def error_string(int code):
        return rd_kafka_err2str(code).decode("utf-8", "replace")

    @staticmethod
    def librdkafka_version():
        return (rd_kafka_version(), rd_kafka_version_str().decode("ascii", "replace"))
