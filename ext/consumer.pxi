# RdConsumer: a librdkafka consumer over its C API whose fetch() formats records straight from
# librdkafka's messages into one byte string: no Python object, callback or call per record (the
# consume half of the compiled path). Docstrings live in gateway/_speedups.pyi; the C API
# declarations are in ext/rdkafka.pxd. The librdkafka library is the one bundled with
# confluent-kafka, as for RdProducer (ext/producer.pxi), whose configuration, error-ring and
# log-ring helpers this file shares.
#
# Queues: rd_kafka_poll_set_consumer() forwards the main queue (errors, logs, commit results) to
# the consumer queue, so everything is served by fetch(); librdkafka writes our eventfd when an
# op lands on that queue and it was served since the last write (rd_kafka_queue_io_event_enable).
# No rebalance callback: librdkafka's default handling assigns and revokes by itself.
#
# fetch() takes messages in batches (rd_kafka_consume_batch_queue). A message it took but cannot
# hand out in this call (max_records or max_bytes reached, a record a JSON format cannot carry,
# a partition paused meanwhile) is *carried*: kept, in order, for the next fetch(). librdkafka
# counts every message it gave us as consumed (its application position is past it, and resume
# after a pause restarts fetching there), so a carried message must never be dropped, except by
# a seek, assign or subscription change that moves the position anyway.
#
# Offsets: enable.auto.offset.store is always false; fetch() stores (rd_kafka_offsets_store) the
# offset after the last record of each partition it handed out (store=True), or keeps it for
# store_pending() (store=False). commit(None) commits what was stored.

from libc.stdio cimport snprintf
from libc.string cimport strcmp

cdef enum:
    # Messages taken from librdkafka per rd_kafka_consume_batch_queue() call.
    _RDC_BATCH = 256
    # The output buffer is freed after a fetch() that needed more than this.
    _RDC_KEEP_OUT = 1 << 20
    # A consumer dropped without close(): how long it may take to leave its group.
    _RDC_DEALLOC_CLOSE_MS = 1000
    _RDC_CLOSE_SLICE_MS = 100
    # Record formats of fetch(): the family (fmt >> 1) and JSON (fmt & 1).
    _RDC_V2 = 0
    _RDC_STRIMZI = 1
    _RDC_V1 = 2
    _RDC_STREAM = 3
    _RDC_STRIMZI_TEXT = 4  # the bridge's text format: keys and values as JSON strings
    _RDC_FORMATS = 10
    # What _take() did with a message.
    _RDC_TAKEN = 0        # handed out (or an error/EOF event), destroyed
    _RDC_LIMIT = 1        # not taken: max_records or max_bytes reached
    _RDC_NOT_JSON = 2     # not taken: a JSON format cannot carry it and records precede it
    _RDC_RAISE = 3        # the first record cannot be carried: destroyed, error to raise


class RdKafkaError(Exception):
    # Docstring in gateway/_speedups.pyi.
    def __init__(self, code, message, retriable=None, topic=None, partition=None, offset=None):
        Exception.__init__(self, message)
        self.code = code
        self.name = rd_kafka_err2name(code).decode("utf-8", "replace")
        self.retriable = _rdc_retriable(code) if retriable is None else bool(retriable)
        self.topic = topic
        self.partition = partition
        self.offset = offset


cdef bint _rdc_retriable(int code) noexcept:
    # Errors a later attempt can get past: the broker or coordinator moving or busy, timeouts.
    return code in (-195, -187, -185, -180, 5, 6, 7, 13, 14, 15, 16, 27)


cdef object _rdc_error(int code, str what, topic=None, partition=None):
    return RdKafkaError(code, f"{what}: {rd_kafka_err2str(code).decode('utf-8', 'replace')}",
                        None, topic, partition)


cdef object _rdc_error_obj(rd_kafka_error_t* error, str what):
    # An RdKafkaError from a librdkafka error object, which is destroyed.
    cdef int code = rd_kafka_error_code(error)
    cdef str text = rd_kafka_error_string(error).decode("utf-8", "replace")
    cdef bint retriable = rd_kafka_error_is_retriable(error)
    rd_kafka_error_destroy(error)
    return RdKafkaError(code, f"{what}: {text}", retriable)


cdef str _rdc_str(const char* s):
    return s.decode("utf-8", "replace") if s != NULL else ""


cdef rd_kafka_topic_partition_list_t* _rdc_list(object partitions, bint offsets) except NULL:
    # A topic-partition list from [(topic, partition)] or [(topic, partition, offset)].
    cdef rd_kafka_topic_partition_list_t* lst = rd_kafka_topic_partition_list_new(
        <int>len(partitions))
    cdef rd_kafka_topic_partition_t* e
    cdef bytes btopic
    try:
        for item in partitions:
            if offsets:
                topic, partition, offset = item
            else:
                topic, partition = item
            if not isinstance(topic, str):
                raise TypeError(f"topic names are str, not {type(topic).__name__}")
            btopic = (<str>topic).encode("utf-8")
            e = rd_kafka_topic_partition_list_add(lst, btopic, <int32_t>partition)
            if offsets:
                e.offset = <int64_t>offset
    except BaseException:
        rd_kafka_topic_partition_list_destroy(lst)
        raise
    return lst


cdef struct _RdcCommitResult:
    rd_kafka_resp_err_t err
    rd_kafka_topic_partition_list_t* offsets   # a copy; the caller destroys it


cdef void cb_rdc_commit_result(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                               rd_kafka_topic_partition_list_t* offsets,
                               void* opaque) noexcept nogil:
    # The synchronous commit's callback (rd_kafka_commit_queue with no queue calls it before it
    # returns, on the committing thread): keeps a copy of what was committed.
    cdef _RdcCommitResult* res = <_RdcCommitResult*>opaque
    res.err = err
    if offsets != NULL and res.offsets == NULL:
        res.offsets = rd_kafka_topic_partition_list_copy(offsets)


cdef void cb_rdc_commit(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t* offsets, void* opaque) noexcept nogil:
    # librdkafka's offset_commit_cb: the outcome of automatic (enable.auto.commit) and
    # asynchronous commits, served by fetch(). Failures go to the error ring; "nothing to
    # commit" is not one.
    cdef _RdpState* st = <_RdpState*>opaque
    cdef int i
    if err != 0 and err != RD_KAFKA_RESP_ERR__NO_OFFSET:
        snprintf(_rdp_error_slot(st, err), _RDP_REASON_BYTES, "offset commit failed: %s",
                 rd_kafka_err2str(err))
        return
    if offsets == NULL:
        return
    for i in range(offsets.cnt):
        if offsets.elems[i].err != 0:
            snprintf(_rdp_error_slot(st, offsets.elems[i].err), _RDP_REASON_BYTES,
                     "offset commit of %s [%d] failed: %s", offsets.elems[i].topic,
                     <int>offsets.elems[i].partition, rd_kafka_err2str(offsets.elems[i].err))


cdef int _rdc_close(rd_kafka_t* rk, int timeout_ms) noexcept nogil:
    # rd_kafka_consumer_close() bounded by timeout_ms: the close runs in librdkafka's threads
    # (leave the group, final commit when auto commit is on) while we serve its queue. 1 when
    # the consumer closed in time.
    cdef rd_kafka_queue_t* q = rd_kafka_queue_new(rk)
    cdef rd_kafka_error_t* error
    cdef rd_kafka_event_t* ev
    cdef int64_t deadline = _rdp_now_ms() + (timeout_ms if timeout_ms > 0 else 0)
    cdef int64_t left
    cdef int closed
    error = rd_kafka_consumer_close_queue(rk, q)
    if error != NULL:
        rd_kafka_error_destroy(error)
        rd_kafka_queue_destroy(q)
        return 0
    while not rd_kafka_consumer_closed(rk):
        left = deadline - _rdp_now_ms()
        if left <= 0:
            break
        ev = rd_kafka_queue_poll(
            q, <int>(left if left < _RDC_CLOSE_SLICE_MS else _RDC_CLOSE_SLICE_MS))
        if ev != NULL:
            rd_kafka_event_destroy(ev)
    closed = rd_kafka_consumer_closed(rk)
    rd_kafka_queue_destroy(q)
    return closed


cdef inline char* _rdc_lit(char* o, const char* s, size_t n) noexcept nogil:
    memcpy(o, s, n)
    return o + n


cdef inline char* _rdc_b64(char* o, const void* p, size_t n) noexcept nogil:
    # "base64" or null.
    if p == NULL:
        return _rdc_lit(o, b"null", 4)
    o[0] = 34
    o += 1 + _b64_encode(o + 1, <const unsigned char*>p, <Py_ssize_t>n)
    o[0] = 34
    return o + 1


cdef inline char* _rdc_text(char* o, const void* p, size_t n) noexcept nogil:
    # A key or value as a JSON string of its text (invalid UTF-8 as U+FFFD), or null.
    if p == NULL:
        return _rdc_lit(o, b"null", 4)
    o[0] = 34
    o += 1
    o += _json_escape(o, <const unsigned char*>p, <Py_ssize_t>n)
    o[0] = 34
    return o + 1


cdef inline char* _rdc_side(char* o, const void* p, size_t n, bint js, bint typed) noexcept nogil:
    # A key or value: null, base64 or the (checked) JSON text compacted; `typed` wraps it as
    # {"type":"BINARY"|"JSON","data":...} (the stream formats).
    if p == NULL:
        return _rdc_lit(o, b"null", 4)
    if typed:
        if js:
            o = _rdc_lit(o, b'{"type":"JSON","data":', 22)
        else:
            o = _rdc_lit(o, b'{"type":"BINARY","data":', 24)
    if js:
        o += _spl_compact_into(<unsigned char*>o, <const unsigned char*>p, <Py_ssize_t>n)
    else:
        o = _rdc_b64(o, p, n)
    if typed:
        o[0] = 125
        o += 1
    return o


@cython.final
cdef class RdConsumer:
    cdef rd_kafka_t* _rk
    cdef rd_kafka_queue_t* _cq        # the consumer queue (everything is forwarded to it)
    cdef int _efd
    cdef _RdpState* _st               # error and log rings, filled by the producer's callbacks
    cdef int _busy                    # calls running with the GIL released (close() waits for none)
    cdef bint _fetching
    # fetch()'s output, one buffer grown as needed.
    cdef char* _out
    cdef Py_ssize_t _out_len
    cdef Py_ssize_t _out_cap
    # Messages taken from librdkafka and not handed out yet, in order (see the top).
    cdef rd_kafka_message_t** _carry
    cdef Py_ssize_t _carry_n
    cdef Py_ssize_t _carry_cap
    cdef Py_ssize_t _carry_paused     # of those, kept by the last fetch for a paused partition
    # The fetch() in progress: records and key+value bytes so far, the offsets to store (the
    # element's opaque is the message's topic handle, for a quick match) and the last one used.
    cdef Py_ssize_t _count
    cdef Py_ssize_t _bytes
    cdef Py_ssize_t _events      # error and end-of-partition events the current fetch met
    cdef bint _continued         # the current fetch continues an answer: max_bytes binds its first record too
    cdef rd_kafka_topic_partition_list_t* _handed
    cdef int _handed_last
    cdef object _raise
    # Offsets after the records of fetch(store=False) calls, for store_pending().
    cdef rd_kafka_topic_partition_list_t* _pending
    cdef set _paused                  # (topic, partition) paused by pause()
    cdef dict _eof                    # (topic, partition) -> offset, since the last eof()
    cdef JsonSplitter _json           # its JSON grammar checks keys and values (JSON formats)
    # The last topic's name (a copy: a topic handle's address may be reused for another
    # topic once librdkafka frees it), and JSON-escaped.
    cdef const rd_kafka_topic_t* _esc_rkt
    cdef char* _esc_raw
    cdef char* _esc
    cdef Py_ssize_t _esc_len
    cdef Py_ssize_t _esc_cap
    cdef _TsCache _ts

    OFFSET_BEGINNING = RD_KAFKA_OFFSET_BEGINNING
    OFFSET_END = RD_KAFKA_OFFSET_END
    OFFSET_STORED = RD_KAFKA_OFFSET_STORED
    OFFSET_INVALID = RD_KAFKA_OFFSET_INVALID
    FORMAT_V2_BINARY = _RDC_V2 << 1
    FORMAT_V2_JSON = (_RDC_V2 << 1) | 1
    FORMAT_STRIMZI_BINARY = _RDC_STRIMZI << 1
    FORMAT_STRIMZI_JSON = (_RDC_STRIMZI << 1) | 1
    FORMAT_V1_BINARY = _RDC_V1 << 1
    FORMAT_V1_JSON = (_RDC_V1 << 1) | 1
    FORMAT_STREAM_BINARY = _RDC_STREAM << 1
    FORMAT_STREAM_JSON = (_RDC_STREAM << 1) | 1
    FORMAT_STRIMZI_TEXT = _RDC_STRIMZI_TEXT << 1

    def __cinit__(self, *args, **kwargs):
        self._efd = -1
        self._handed_last = -1
        self._st = <_RdpState*>calloc(1, sizeof(_RdpState))
        if self._st == NULL:
            raise MemoryError()
        self._paused = set()
        self._eof = {}
        _ts_cache_init(&self._ts)

    def __init__(self, config):
        cdef char errstr[_RDP_ERRSTR_BYTES]
        cdef rd_kafka_conf_t* conf
        cdef rd_kafka_t* rk
        cdef rd_kafka_resp_err_t err
        if self._rk != NULL:
            raise RuntimeError("RdConsumer.__init__ called twice")
        items = list(config.items())  # a mapping; iterated once, before anything is created
        self._json = JsonSplitter()
        # Set after the caller's properties, so they cannot replace them. log.queue: the log
        # lines are served by fetch() (cb_rdp_log), not printed by librdkafka's threads.
        # enable.auto.offset.store=false: fetch() stores the offsets of what it handed out.
        conf = _rdp_new_conf(items, ((b"log.queue", b"true"),
                                     (b"enable.auto.offset.store", b"false")))
        rd_kafka_conf_set_log_cb(conf, cb_rdp_log)
        rd_kafka_conf_set_error_cb(conf, cb_rdp_error)
        rd_kafka_conf_set_offset_commit_cb(conf, cb_rdc_commit)
        rd_kafka_conf_set_opaque(conf, <void*>self._st)

        self._efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self._efd < 0:
            rd_kafka_conf_destroy(conf)
            raise OSError("eventfd() failed")
        errstr[0] = 0
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))
        if rk == NULL:
            rd_kafka_conf_destroy(conf)  # rd_kafka_new() takes the conf only on success
            _rdp_close_fd(self._efd)
            self._efd = -1
            raise ValueError(
                f"librdkafka refused the consumer configuration: "
                f"{errstr.decode('utf-8', 'replace')}")
        err = rd_kafka_poll_set_consumer(rk)
        if err:
            with nogil:
                rd_kafka_destroy(rk)
            _rdp_close_fd(self._efd)
            self._efd = -1
            raise ValueError(
                f"librdkafka property 'group.id' is required (the consumer has no group: "
                f"{rd_kafka_err2str(err).decode('utf-8', 'replace')})")
        self._rk = rk
        rd_kafka_set_log_queue(rk, NULL)  # log lines to the main queue, forwarded to ours
        self._cq = rd_kafka_queue_get_consumer(rk)
        rd_kafka_queue_io_event_enable(self._cq, self._efd, &_rdp_one, sizeof(_rdp_one))
        # librdkafka writes the fd for ops enqueued from now on; one wake-up for any before.
        _rdp_write(self._efd, &_rdp_one, sizeof(_rdp_one))

    def __dealloc__(self):
        # Dropped without close(): the same close, but at most _RDC_DEALLOC_CLOSE_MS to leave
        # the group; past it the consumer is destroyed without leaving (the group notices after
        # session.timeout.ms). Nothing here may block long: it runs wherever the last reference
        # goes, the event loop included.
        if self._rk != NULL:
            self._shutdown(_RDC_DEALLOC_CLOSE_MS)
        if self._efd >= 0:
            _rdp_close_fd(self._efd)
            self._efd = -1
        free(self._out)
        self._out = NULL
        free(self._carry)
        self._carry = NULL
        free(self._esc)
        self._esc = NULL
        free(self._esc_raw)
        self._esc_raw = NULL
        free(self._st)
        self._st = NULL

    # ------------------------------------------------------------ lifecycle

    cdef inline rd_kafka_t* _live(self) except NULL:
        if self._rk == NULL:
            raise RuntimeError("the consumer is closed")
        return self._rk

    cdef void _drop_carry(self, object partitions) noexcept:
        # Destroys the carried messages of `partitions` ({(topic, partition)}; None: all).
        cdef Py_ssize_t i, k = 0
        cdef rd_kafka_message_t* m
        for i in range(self._carry_n):
            m = self._carry[i]
            if partitions is not None and m.rkt != NULL and (
                    _rdc_str(rd_kafka_topic_name(m.rkt)), m.partition) not in partitions:
                self._carry[k] = m
                k += 1
            else:
                rd_kafka_message_destroy(m)
        self._carry_n = k
        self._carry_paused = 0

    cdef void _drop_carry_topics(self, set keep) noexcept:
        # Destroys the carried messages of topics not in `keep`.
        cdef Py_ssize_t i, k = 0
        cdef rd_kafka_message_t* m
        for i in range(self._carry_n):
            m = self._carry[i]
            if m.rkt != NULL and _rdc_str(rd_kafka_topic_name(m.rkt)) not in keep:
                rd_kafka_message_destroy(m)
            else:
                self._carry[k] = m
                k += 1
        self._carry_n = k
        self._carry_paused = 0

    cdef void _shutdown(self, int timeout_ms) noexcept:
        cdef rd_kafka_t* rk = self._rk
        cdef int closed
        self._drop_carry(None)
        if self._handed != NULL:
            rd_kafka_topic_partition_list_destroy(self._handed)
            self._handed = NULL
        if self._pending != NULL:
            rd_kafka_topic_partition_list_destroy(self._pending)
            self._pending = NULL
        if self._cq != NULL:
            # No more writes to our eventfd (it is closed next, and its number may be reused).
            rd_kafka_queue_io_event_enable(self._cq, -1, NULL, 0)
            rd_kafka_queue_destroy(self._cq)
            self._cq = NULL
        self._rk = NULL
        with nogil:
            closed = _rdc_close(rk, timeout_ms)
            rd_kafka_destroy_flags(rk, 0 if closed else RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)

    def close(self, int timeout_ms=10000):
        if self._rk == NULL:
            return
        if self._busy:
            raise RuntimeError("close() while another call on this consumer runs")
        self._shutdown(timeout_ms)
        if self._efd >= 0:
            _rdp_close_fd(self._efd)
            self._efd = -1

    @property
    def closed(self):
        return self._rk == NULL

    def event_fd(self):
        return self._efd

    def queued(self):
        if self._rk == NULL:
            return 0
        return <Py_ssize_t>rd_kafka_queue_length(self._cq) + self._carry_n

    def member_id(self):
        cdef rd_kafka_t* rk = self._live()
        cdef char* p = rd_kafka_memberid(rk)
        if p == NULL:
            return ""
        try:
            return _rdc_str(p)
        finally:
            rd_kafka_mem_free(rk, p)

    # ------------------------------------------------------------ subscription, assignment

    def subscribe(self, topics):
        cdef rd_kafka_t* rk = self._live()
        cdef rd_kafka_topic_partition_list_t* lst
        cdef rd_kafka_resp_err_t err
        names = list(topics)
        if not names:
            raise ValueError("subscribe() needs at least one topic (unsubscribe() for none)")
        lst = _rdc_list([(t, RD_KAFKA_PARTITION_UA) for t in names], False)
        self._busy += 1
        with nogil:
            err = rd_kafka_subscribe(rk, lst)
        self._busy -= 1
        rd_kafka_topic_partition_list_destroy(lst)
        if err:
            raise _rdc_error(err, f"subscribe to {names!r}")
        # What was carried for topics no longer subscribed is dropped (a pattern may match
        # anything: then nothing is). Partitions that stay assigned go on from where they were.
        if self._carry_n and not any(t.startswith("^") for t in names):
            self._drop_carry_topics(set(names))

    def unsubscribe(self):
        cdef rd_kafka_t* rk = self._live()
        cdef rd_kafka_resp_err_t err
        self._busy += 1
        with nogil:
            err = rd_kafka_unsubscribe(rk)
        self._busy -= 1
        if err:
            raise _rdc_error(err, "unsubscribe")
        self._drop_carry(None)
        self._paused.clear()

    def subscription(self):
        cdef rd_kafka_t* rk = self._live()
        cdef rd_kafka_topic_partition_list_t* lst = NULL
        cdef rd_kafka_resp_err_t err
        cdef int i
        with nogil:
            err = rd_kafka_subscription(rk, &lst)
        if err:
            raise _rdc_error(err, "subscription")
        try:
            return [_rdc_str(lst.elems[i].topic) for i in range(lst.cnt)]
        finally:
            rd_kafka_topic_partition_list_destroy(lst)

    def assign(self, partitions):
        cdef rd_kafka_t* rk = self._live()
        cdef rd_kafka_topic_partition_list_t* lst = NULL
        cdef rd_kafka_resp_err_t err
        items = list(partitions)
        if items:
            lst = _rdc_list(items, True)
        self._busy += 1
        with nogil:
            err = rd_kafka_assign(rk, lst)  # NULL: unassign everything
        self._busy -= 1
        if lst != NULL:
            rd_kafka_topic_partition_list_destroy(lst)
        if err:
            raise _rdc_error(err, "assign")
        self._drop_carry(None)
        self._paused.clear()

    def assignment(self):
        cdef rd_kafka_t* rk = self._live()
        cdef rd_kafka_topic_partition_list_t* lst = NULL
        cdef rd_kafka_resp_err_t err
        cdef int i
        with nogil:
            err = rd_kafka_assignment(rk, &lst)
        if err:
            raise _rdc_error(err, "assignment")
        try:
            return sorted([(_rdc_str(lst.elems[i].topic), lst.elems[i].partition)
                           for i in range(lst.cnt)])
        finally:
            rd_kafka_topic_partition_list_destroy(lst)

    # ------------------------------------------------------------ positions

    def seek(self, partitions, int timeout_ms):
        cdef rd_kafka_t* rk = self._live()
        cdef rd_kafka_topic_partition_list_t* lst
        cdef rd_kafka_error_t* error
        cdef rd_kafka_topic_partition_t* e
        cdef int i
        items = list(partitions)
        if not items:
            return
        lst = _rdc_list(items, True)
        try:
            # What was carried for them is behind (or beyond) the new position.
            self._drop_carry({(t, p) for t, p, _ in items})
            self._busy += 1
            with nogil:
                error = rd_kafka_seek_partitions(rk, lst, timeout_ms)
            self._busy -= 1
            if error != NULL:
                raise _rdc_error_obj(error, "seek")
            for i in range(lst.cnt):
                e = &lst.elems[i]
                if e.err:
                    raise _rdc_error(e.err, f"seek in topic {_rdc_str(e.topic)} partition "
                                     f"{e.partition} to offset {e.offset}",
                                     _rdc_str(e.topic), e.partition)
        finally:
            rd_kafka_topic_partition_list_destroy(lst)

    def position(self, partitions):
        cdef rd_kafka_t* rk = self._live()
        cdef rd_kafka_topic_partition_list_t* lst
        cdef rd_kafka_resp_err_t err
        cdef rd_kafka_message_t* m
        cdef int i
        cdef Py_ssize_t c
        cdef int64_t offset
        cdef const char* name
        items = list(partitions)
        lst = _rdc_list(items, False)
        try:
            err = rd_kafka_position(rk, lst)
            if err:
                raise _rdc_error(err, "position")
            out = []
            for i in range(lst.cnt):
                offset = lst.elems[i].offset
                # librdkafka counts carried messages as consumed: the position is the first.
                for c in range(self._carry_n):
                    m = self._carry[c]
                    if m.err == 0 and m.rkt != NULL and m.partition == lst.elems[i].partition:
                        name = rd_kafka_topic_name(m.rkt)
                        if strcmp(name, lst.elems[i].topic) == 0:
                            offset = m.offset
                            break
                out.append(offset)
            return out
        finally:
            rd_kafka_topic_partition_list_destroy(lst)

    def committed(self, partitions, int timeout_ms):
        cdef rd_kafka_t* rk = self._live()
        cdef rd_kafka_topic_partition_list_t* lst
        cdef rd_kafka_resp_err_t err
        cdef rd_kafka_topic_partition_t* e
        cdef int i
        lst = _rdc_list(list(partitions), False)
        try:
            self._busy += 1
            with nogil:
                err = rd_kafka_committed(rk, lst, timeout_ms)
            self._busy -= 1
            if err:
                raise _rdc_error(err, "committed offsets")
            out = []
            for i in range(lst.cnt):
                e = &lst.elems[i]
                if e.err:
                    raise _rdc_error(e.err, f"committed offset of topic {_rdc_str(e.topic)} "
                                     f"partition {e.partition}", _rdc_str(e.topic), e.partition)
                out.append((_rdc_str(e.topic), e.partition, e.offset,
                            (<char*>e.metadata)[:e.metadata_size].decode("utf-8", "replace")
                            if e.metadata != NULL else ""))
            return out
        finally:
            rd_kafka_topic_partition_list_destroy(lst)

    def commit(self, offsets=None, bint asynchronous=False):
        cdef rd_kafka_t* rk = self._live()
        cdef rd_kafka_topic_partition_list_t* lst = NULL
        cdef rd_kafka_resp_err_t err
        cdef _RdcCommitResult res
        cdef rd_kafka_topic_partition_t* e
        cdef int i
        if offsets is not None:
            items = list(offsets)
            if not items:
                return []
            lst = _rdc_list(items, True)
        if asynchronous:
            err = rd_kafka_commit(rk, lst, 1)
            if lst != NULL:
                rd_kafka_topic_partition_list_destroy(lst)
            if err and err != RD_KAFKA_RESP_ERR__NO_OFFSET:
                raise _rdc_error(err, "commit")
            return []
        res.err = 0
        res.offsets = NULL
        self._busy += 1
        with nogil:
            err = rd_kafka_commit_queue(rk, lst, NULL, cb_rdc_commit_result, &res)
        self._busy -= 1
        if lst != NULL:
            rd_kafka_topic_partition_list_destroy(lst)
        try:
            if err == RD_KAFKA_RESP_ERR__NO_OFFSET:
                return []
            if err:
                raise _rdc_error(err, "commit")
            out = []
            if res.offsets != NULL:
                for i in range(res.offsets.cnt):
                    e = &res.offsets.elems[i]
                    if e.err:
                        raise _rdc_error(e.err, f"commit of topic {_rdc_str(e.topic)} partition "
                                         f"{e.partition}", _rdc_str(e.topic), e.partition)
                    if e.offset >= 0:
                        out.append((_rdc_str(e.topic), e.partition, e.offset))
            return sorted(out)
        finally:
            if res.offsets != NULL:
                rd_kafka_topic_partition_list_destroy(res.offsets)

    def store_pending(self):
        cdef rd_kafka_t* rk = self._live()
        cdef rd_kafka_topic_partition_list_t* lst = self._pending
        cdef int i, stored = 0
        if lst == NULL:
            return 0
        self._pending = NULL
        rd_kafka_offsets_store(rk, lst)  # per partition: err set where it could not store
        for i in range(lst.cnt):
            if lst.elems[i].err == 0:
                stored += 1
        rd_kafka_topic_partition_list_destroy(lst)
        return stored

    def pause(self, partitions=None):
        self._pause_resume(partitions, True)

    def resume(self, partitions=None):
        self._pause_resume(partitions, False)
        if self._carry_n:
            # What was carried for them is due now: bring the reader back.
            _rdp_write(self._efd, &_rdp_one, sizeof(_rdp_one))

    cdef int _pause_resume(self, object partitions, bint pause) except -1:
        cdef rd_kafka_t* rk = self._live()
        cdef rd_kafka_topic_partition_list_t* lst = NULL
        cdef rd_kafka_resp_err_t err
        cdef int i
        if partitions is None:
            err = rd_kafka_assignment(rk, &lst)
            if err:
                raise _rdc_error(err, "assignment")
        else:
            lst = _rdc_list(list(partitions), False)
        try:
            if lst.cnt == 0:
                return 0
            self._busy += 1
            with nogil:
                if pause:
                    err = rd_kafka_pause_partitions(rk, lst)
                else:
                    err = rd_kafka_resume_partitions(rk, lst)
            self._busy -= 1
            if err:
                raise _rdc_error(err, "pause" if pause else "resume")
            for i in range(lst.cnt):
                if lst.elems[i].err == 0:
                    key = (_rdc_str(lst.elems[i].topic), lst.elems[i].partition)
                    if pause:
                        self._paused.add(key)
                    else:
                        self._paused.discard(key)
        finally:
            rd_kafka_topic_partition_list_destroy(lst)
        return 0

    def watermarks(self, str topic not None, int32_t partition, bint cached, int timeout_ms=0):
        cdef rd_kafka_t* rk = self._live()
        cdef bytes btopic = topic.encode("utf-8")
        cdef const char* ctopic = btopic
        cdef int64_t low = RD_KAFKA_OFFSET_INVALID, high = RD_KAFKA_OFFSET_INVALID
        cdef rd_kafka_resp_err_t err
        if cached:
            err = rd_kafka_get_watermark_offsets(rk, ctopic, partition, &low, &high)
        else:
            self._busy += 1
            with nogil:
                err = rd_kafka_query_watermark_offsets(rk, ctopic, partition, &low, &high,
                                                       timeout_ms)
            self._busy -= 1
        if err:
            raise _rdc_error(err, f"watermarks of topic {topic} partition {partition}", topic,
                             partition)
        return (low, high)

    # ------------------------------------------------------------ events

    def eof(self):
        out = sorted((t, p, o) for (t, p), o in self._eof.items())
        self._eof.clear()
        return out

    def take_errors(self):
        return _rdp_take_errors(self._st)

    @property
    def fetched_bytes(self):
        return self._bytes

    def take_logs(self):
        return _rdp_take_logs(self._st)

    # ------------------------------------------------------------ fetch

    def fetch(self, Py_ssize_t max_records, Py_ssize_t max_bytes, int timeout_ms, int fmt,
              Py_ssize_t min_bytes=0, bint store=True, bint first=True,
              bint stop_on_event=False, bint continued=False):
        # `first` is for formats whose pieces need separators; the stream formats end every
        # record with a newline, so none needs it yet.
        cdef rd_kafka_t* rk = self._live()
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if timeout_ms < 0 or min_bytes < 0:
            raise ValueError("timeout_ms and min_bytes must not be negative")
        if not 0 <= fmt < _RDC_FORMATS:
            raise ValueError(f"unknown record format {fmt}")
        if self._fetching:
            raise RuntimeError("fetch() while another fetch() on this consumer runs")
        self._fetching = True
        self._busy += 1
        try:
            self._continued = continued
            return self._fetch(rk, max_records, max_bytes, timeout_ms, fmt, min_bytes, store,
                               stop_on_event)
        finally:
            self._busy -= 1
            self._fetching = False
            if self._out_cap > _RDC_KEEP_OUT:
                free(self._out)
                self._out = NULL
                self._out_cap = 0

    cdef tuple _fetch(self, rd_kafka_t* rk, Py_ssize_t max_records, Py_ssize_t max_bytes,
                      int timeout_ms, int fmt, Py_ssize_t min_bytes, bint store,
                      bint stop_on_event):
        cdef rd_kafka_message_t* batch[_RDC_BATCH]
        cdef rd_kafka_message_t* m
        cdef Py_ssize_t n, i, want
        cdef int stop = _RDC_TAKEN
        cdef int64_t deadline = _rdp_now_ms() + timeout_ms
        cdef int64_t left
        cdef uint64_t drained
        cdef bint array = (fmt >> 1) != _RDC_STREAM
        cdef object raised
        # Read the eventfd first: an op enqueued after the serve below writes it again.
        _rdp_read(self._efd, &drained, sizeof(drained))
        self._count = 0
        self._bytes = 0
        self._events = 0
        self._out_len = 0
        self._handed_last = -1
        self._raise = None
        self._reserve(64)
        if array:
            self._out[0] = 91
            self._out_len = 1
        try:
            if self._carry_n:
                stop = self._take_carried(fmt, max_records, max_bytes)
            while stop == _RDC_TAKEN and self._count < max_records:
                want = max_records - self._count
                if want > _RDC_BATCH:
                    want = _RDC_BATCH
                n = rd_kafka_consume_batch_queue(self._cq, 0, batch, <size_t>want)
                if n > 0:
                    self._carry_reserve(self._carry_n + n)
                    i = 0
                    try:
                        while i < n:
                            m = batch[i]
                            if stop == _RDC_TAKEN:
                                stop = self._take(m, fmt, max_records, max_bytes)
                                if stop == _RDC_LIMIT or stop == _RDC_NOT_JSON:
                                    self._carry[self._carry_n] = m
                                    self._carry_n += 1
                            else:
                                self._carry[self._carry_n] = m
                                self._carry_n += 1
                            i += 1
                    finally:
                        # Only after an exception: batch[i] and later were not placed.
                        while i < n:
                            rd_kafka_message_destroy(batch[i])
                            i += 1
                    continue
                if self._count > 0 and self._bytes >= min_bytes:
                    break
                if stop_on_event and self._events:
                    break
                left = deadline - _rdp_now_ms()
                if left <= 0:
                    break
                with nogil:
                    m = rd_kafka_consumer_poll(rk, <int>left)
                if m != NULL:
                    try:
                        self._carry_reserve(self._carry_n + 1)
                        stop = self._take(m, fmt, max_records, max_bytes)
                    except BaseException:
                        rd_kafka_message_destroy(m)
                        raise
                    if stop == _RDC_LIMIT or stop == _RDC_NOT_JSON:
                        self._carry[self._carry_n] = m
                        self._carry_n += 1
        finally:
            self._hand_over(rk, store)
            if self._carry_n > self._carry_paused or rd_kafka_queue_length(self._cq) > 0:
                # Records (or events) wait that librdkafka will not signal again: bring the
                # reader back for them.
                _rdp_write(self._efd, &_rdp_one, sizeof(_rdp_one))
        if stop == _RDC_RAISE:
            raised = self._raise
            self._raise = None
            raise raised
        if array:
            if self._count == 0:
                self._out[1] = 93
                self._out_len = 2
            else:
                self._out[self._out_len] = 93
                self._out_len += 1
        return PyBytes_FromStringAndSize(self._out, self._out_len), self._count

    cdef int _take_carried(self, int fmt, Py_ssize_t max_records,
                           Py_ssize_t max_bytes) except -1:
        # The carried messages first, in order; those of a paused partition stay carried.
        cdef Py_ssize_t i = 0, k = 0, n = self._carry_n
        cdef rd_kafka_message_t* m
        cdef int stop = _RDC_TAKEN, r
        self._carry_paused = 0
        try:
            while i < n:
                m = self._carry[i]
                i += 1
                if stop != _RDC_TAKEN:
                    self._carry[k] = m
                    k += 1
                    continue
                if self._paused and m.err == 0 and m.rkt != NULL and (
                        _rdc_str(rd_kafka_topic_name(m.rkt)), m.partition) in self._paused:
                    self._carry[k] = m
                    k += 1
                    self._carry_paused += 1
                    continue
                r = self._take(m, fmt, max_records, max_bytes)
                if r == _RDC_LIMIT or r == _RDC_NOT_JSON:
                    self._carry[k] = m
                    k += 1
                stop = r
        except BaseException:
            # The message being taken (i - 1) and the rest stay carried.
            i -= 1
            while i < n:
                self._carry[k] = self._carry[i]
                k += 1
                i += 1
            raise
        finally:
            self._carry_n = k
        return stop

    cdef int _take(self, rd_kafka_message_t* m, int fmt, Py_ssize_t max_records,
                   Py_ssize_t max_bytes) except -1:
        # Hands out one message (see _RDC_TAKEN and the others). On an exception the message is
        # left to the caller.
        cdef Py_ssize_t size
        cdef int bad = 0
        cdef const char* topic
        if m.err:
            self._message_event(m)
            rd_kafka_message_destroy(m)
            return _RDC_TAKEN
        size = <Py_ssize_t>((m.key_len if m.key != NULL else 0)
                            + (m.len if m.payload != NULL else 0))
        if (self._count > 0 or self._continued) and (
                self._count >= max_records or self._bytes + size > max_bytes):
            return _RDC_LIMIT
        if fmt & 1:
            if m.key != NULL and not self._json._is_json_text(
                    <const unsigned char*>m.key, <Py_ssize_t>m.key_len):
                bad = 1
            elif m.payload != NULL and not self._json._is_json_text(
                    <const unsigned char*>m.payload, <Py_ssize_t>m.len):
                bad = 2
            if bad:
                if self._count > 0:
                    return _RDC_NOT_JSON
                self._raise = self._not_json(m, bad == 1)
                # Handed out as this error: its offset is stored like a record's.
                self._hand(m, rd_kafka_topic_name(m.rkt))
                rd_kafka_message_destroy(m)
                return _RDC_RAISE
        topic = rd_kafka_topic_name(m.rkt)
        self._put(m, topic, fmt)
        self._hand(m, topic)
        self._count += 1
        self._bytes += size
        rd_kafka_message_destroy(m)
        return _RDC_TAKEN

    cdef object _not_json(self, rd_kafka_message_t* m, bint key):
        cdef str topic = _rdc_str(rd_kafka_topic_name(m.rkt)) if m.rkt != NULL else ""
        cdef str reason
        if key:
            reason = self._json._json_text_reason(<const unsigned char*>m.key,
                                                  <Py_ssize_t>m.key_len)
        else:
            reason = self._json._json_text_reason(<const unsigned char*>m.payload,
                                                  <Py_ssize_t>m.len)
        return RdKafkaError(
            RD_KAFKA_RESP_ERR__KEY_DESERIALIZATION if key
            else RD_KAFKA_RESP_ERR__VALUE_DESERIALIZATION,
            f"topic {topic} partition {m.partition} offset {m.offset}: the "
            f"{'key' if key else 'value'} is not JSON ({reason})",
            False, topic, m.partition, m.offset)

    cdef int _message_event(self, rd_kafka_message_t* m) except -1:
        # A message with an error: end of partition (for eof()), or an error for take_errors().
        cdef const char* text
        cdef char* slot
        self._events += 1
        if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF:
            if m.rkt != NULL:
                self._eof[(_rdc_str(rd_kafka_topic_name(m.rkt)), m.partition)] = m.offset
            return 0
        text = rd_kafka_message_errstr(m)
        if text == NULL:
            text = rd_kafka_err2str(m.err)
        slot = _rdp_error_slot(self._st, m.err)
        if m.rkt != NULL:
            snprintf(slot, _RDP_REASON_BYTES, "%s [%d]: %s", rd_kafka_topic_name(m.rkt),
                     <int>m.partition, text)
        else:
            snprintf(slot, _RDP_REASON_BYTES, "%s", text)
        return 0

    cdef int _hand(self, rd_kafka_message_t* m, const char* topic) except -1:
        # Notes the offset after m as its partition's offset to store. The topic handle is
        # compared first, the name to be sure.
        cdef rd_kafka_topic_partition_list_t* h = self._handed
        cdef rd_kafka_topic_partition_t* e
        cdef int i = self._handed_last
        if h == NULL:
            h = rd_kafka_topic_partition_list_new(8)
            self._handed = h
        if not (i >= 0 and h.elems[i].opaque == <void*>m.rkt
                and h.elems[i].partition == m.partition and strcmp(h.elems[i].topic, topic) == 0):
            for i in range(h.cnt):
                if (h.elems[i].opaque == <void*>m.rkt and h.elems[i].partition == m.partition
                        and strcmp(h.elems[i].topic, topic) == 0):
                    break
            else:
                e = rd_kafka_topic_partition_list_add(h, topic, m.partition)
                e.opaque = <void*>m.rkt
                i = h.cnt - 1
            self._handed_last = i
        h.elems[i].offset = m.offset + 1
        return 0

    cdef void _hand_over(self, rd_kafka_t* rk, bint store) noexcept:
        # The end of a fetch: store the offsets after what it handed out, or keep them for
        # store_pending().
        cdef rd_kafka_topic_partition_list_t* h = self._handed
        cdef rd_kafka_topic_partition_t* e
        cdef int i
        if h == NULL:
            return
        self._handed = NULL
        self._handed_last = -1
        if store:
            # Per partition, err is set where it could not store (no longer assigned).
            rd_kafka_offsets_store(rk, h)
        else:
            if self._pending == NULL:
                self._pending = rd_kafka_topic_partition_list_new(h.cnt)
            for i in range(h.cnt):
                e = rd_kafka_topic_partition_list_find(self._pending, h.elems[i].topic,
                                                       h.elems[i].partition)
                if e == NULL:
                    e = rd_kafka_topic_partition_list_add(self._pending, h.elems[i].topic,
                                                          h.elems[i].partition)
                e.offset = h.elems[i].offset
        rd_kafka_topic_partition_list_destroy(h)

    cdef int _carry_reserve(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap
        cdef void* p
        if need <= self._carry_cap:
            return 0
        cap = self._carry_cap * 2
        if cap < _RDC_BATCH:
            cap = _RDC_BATCH
        if cap < need:
            cap = need
        p = realloc(self._carry, <size_t>cap * sizeof(rd_kafka_message_t*))
        if p == NULL:
            raise MemoryError()
        self._carry = <rd_kafka_message_t**>p
        self._carry_cap = cap
        return 0

    cdef int _reserve(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap
        cdef char* grown
        if need <= self._out_cap:
            return 0
        cap = self._out_cap * 2
        if cap < 65536:
            cap = 65536
        if cap < need:
            cap = need
        grown = <char*>realloc(self._out, <size_t>cap)
        if grown == NULL:
            raise MemoryError()
        self._out = grown
        self._out_cap = cap
        return 0

    cdef int _escape_topic(self, const rd_kafka_topic_t* rkt, const char* name) except -1:
        # The topic's name JSON-escaped, kept until a message of another topic comes.
        cdef Py_ssize_t n = <Py_ssize_t>strlen(name)
        cdef void* p
        if 6 * n + 1 > self._esc_cap:
            self._esc_rkt = NULL
            p = realloc(self._esc, <size_t>(6 * n + 64))
            if p == NULL:
                raise MemoryError()
            self._esc = <char*>p
            p = realloc(self._esc_raw, <size_t>(6 * n + 64))
            if p == NULL:
                raise MemoryError()
            self._esc_raw = <char*>p
            self._esc_cap = 6 * n + 64
        memcpy(self._esc_raw, name, <size_t>n + 1)
        self._esc_len = _json_escape(self._esc, <const unsigned char*>name, n)
        self._esc_rkt = rkt
        return 0

    cdef int _put(self, rd_kafka_message_t* m, const char* topic, int fmt) except -1:
        # One record in format `fmt` at the end of the output.
        cdef int family = fmt >> 1
        cdef bint js = fmt & 1
        cdef bint text = family == _RDC_STRIMZI_TEXT
        cdef size_t klen = m.key_len if m.key != NULL else 0
        cdef size_t vlen = m.len if m.payload != NULL else 0
        cdef rd_kafka_headers_t* hdrs = NULL
        cdef size_t nh = 0, h, hsize
        cdef const char* hname
        cdef const void* hvalue
        cdef Py_ssize_t need
        cdef rd_kafka_timestamp_type_t tstype
        cdef int64_t ts
        cdef char* o
        if m.rkt != self._esc_rkt or strcmp(topic, self._esc_raw) != 0:
            self._escape_topic(m.rkt, topic)
        if text:
            family = _RDC_STRIMZI
            need = 320 + self._esc_len + 6 * <Py_ssize_t>(klen + vlen)
        else:
            need = 320 + self._esc_len + _b64_len(<Py_ssize_t>klen) + _b64_len(<Py_ssize_t>vlen)
        if family == _RDC_STRIMZI or family == _RDC_STREAM:
            if rd_kafka_message_headers(m, &hdrs) == 0 and hdrs != NULL:
                nh = rd_kafka_header_cnt(hdrs)
                for h in range(nh):
                    if rd_kafka_header_get_all(hdrs, h, &hname, &hvalue, &hsize) == 0:
                        need += 40 + 6 * <Py_ssize_t>strlen(hname) + _b64_len(
                            <Py_ssize_t>hsize if hvalue != NULL else 0)
        self._reserve(self._out_len + need)
        o = self._out + self._out_len
        if family == _RDC_STREAM:
            ts = rd_kafka_message_timestamp(m, &tstype)
            o = _rdc_lit(o, b'{"topic_name":"', 15)
            o = _rdc_lit(o, self._esc, <size_t>self._esc_len)
            o = _rdc_lit(o, b'","partition_id":', 17)
            o += _sc_int(o, m.partition)
            o = _rdc_lit(o, b',"offset":', 10)
            o += _sc_int(o, m.offset)
            if ts >= 0:
                o = _rdc_lit(o, b',"timestamp":"', 14)
                o += _sc_format_ms(o, ts, &self._ts)
                o[0] = 34
                o += 1
            else:
                o = _rdc_lit(o, b',"timestamp":null', 17)
            o = _rdc_lit(o, b',"key":', 7)
            o = _rdc_side(o, m.key, klen, js, True)
            o = _rdc_lit(o, b',"value":', 9)
            o = _rdc_side(o, m.payload, vlen, js, True)
            o = _rdc_lit(o, b',"headers":[', 12)
            for h in range(nh):
                if rd_kafka_header_get_all(hdrs, h, &hname, &hvalue, &hsize) != 0:
                    continue
                if h:
                    o[0] = 44
                    o += 1
                o = _rdc_lit(o, b'{"name":"', 9)
                o += _json_escape(o, <const unsigned char*>hname, <Py_ssize_t>strlen(hname))
                o = _rdc_lit(o, b'","value":', 10)
                o = _rdc_b64(o, hvalue, hsize)
                o[0] = 125
                o += 1
            o = _rdc_lit(o, b']}\n', 3)
            self._out_len = o - self._out
            return 0
        if self._count:
            o[0] = 44
            o += 1
        if family == _RDC_V1:
            o = _rdc_lit(o, b'{"key":', 7)
        else:
            o = _rdc_lit(o, b'{"topic":"', 10)
            o = _rdc_lit(o, self._esc, <size_t>self._esc_len)
            o = _rdc_lit(o, b'","key":', 8)
        if text:
            o = _rdc_text(o, m.key, klen)
            o = _rdc_lit(o, b',"value":', 9)
            o = _rdc_text(o, m.payload, vlen)
        else:
            o = _rdc_side(o, m.key, klen, js, False)
            o = _rdc_lit(o, b',"value":', 9)
            o = _rdc_side(o, m.payload, vlen, js, False)
        o = _rdc_lit(o, b',"partition":', 13)
        o += _sc_int(o, m.partition)
        o = _rdc_lit(o, b',"offset":', 10)
        o += _sc_int(o, m.offset)
        if family == _RDC_STRIMZI:
            o = _rdc_lit(o, b',"timestamp":', 13)
            o += _sc_int(o, rd_kafka_message_timestamp(m, &tstype))
            if nh:
                o = _rdc_lit(o, b',"headers":[', 12)
                for h in range(nh):
                    if rd_kafka_header_get_all(hdrs, h, &hname, &hvalue, &hsize) != 0:
                        continue
                    if h:
                        o[0] = 44
                        o += 1
                    o = _rdc_lit(o, b'{"key":"', 8)
                    o += _json_escape(o, <const unsigned char*>hname,
                                      <Py_ssize_t>strlen(hname))
                    o = _rdc_lit(o, b'","value":', 10)
                    o = _rdc_b64(o, hvalue, hsize)
                    o[0] = 125
                    o += 1
                o[0] = 93
                o += 1
        o[0] = 125
        self._out_len = o + 1 - self._out
        return 0
