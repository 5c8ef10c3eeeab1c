# Report formatting: what a delivered or failed record's report looks like in bytes (docs/api.md
# §1 for v3 streams, §2/§3 for v1/v2 offsets entries). StreamCore (stream.pxi) keeps the ring of
# slots in send order; the functions here turn one slot into its bytes, appended to one output
# buffer shared by every stream (there is one event loop thread).

from cpython.object cimport PyObject
from libc.stdint cimport uint8_t, uint32_t

cdef enum:
    _SC_FREE = 0
    _SC_PENDING = 1     # with librdkafka, report not in yet
    _SC_OK = 2          # delivered: partition, offset, timestamp filled
    _SC_FAILED = 3      # `report` holds the failure report's bytes (or the 202 report)
    _SC_SPOOLING = 4    # appended to the disk spool; `offset` holds the append's token
    # Report formats (StreamCore mode): the v3 stream report followed by CRLF, or a v1/v2
    # offsets entry followed by a comma (the caller drops the last one).
    FORMAT_V3 = 0
    FORMAT_V1 = 1
    FORMAT_V2 = 2
    # The shared output buffer is freed after a take_ready() that needed more than this.
    _SC_KEEP_OUT = 1 << 20
    # A slot's report is at most this long, beyond the v3 prefix (partition, offset, timestamp,
    # key and value sizes, the punctuation).
    _SC_MAX_REPORT = 256


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


cdef inline Py_ssize_t _sc_int(char* o, int64_t v) noexcept nogil:
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


cdef inline void _sc_2(char* o, int v) noexcept nogil:
    o[0] = <char>(48 + v // 10)
    o[1] = <char>(48 + v % 10)


@cython.cdivision(True)
cdef void _sc_civil(int64_t days, int64_t* year, int* month, int* day) noexcept nogil:
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


cdef Py_ssize_t _sc_format_seconds(char* o, int64_t sec) noexcept nogil:
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


cdef struct _TsCache:
    # The second last formatted ("YYYY-MM-DDTHH:MM:SS") and its text: reports of one stream
    # mostly share the second.
    int64_t sec
    char text[32]
    Py_ssize_t length


cdef inline void _ts_cache_init(_TsCache* c) noexcept nogil:
    c.sec = -(1 << 62)
    c.length = 0


cdef inline Py_ssize_t _sc_format_ms(char* o, int64_t ms, _TsCache* ts) noexcept nogil:
    # format_timestamp(ms) at o ("YYYY-MM-DDTHH:MM:SS.mmmZ", no quotes), the seconds from the
    # cache when they are the last ones formatted; returns the length (at most 40).
    cdef int64_t sec = ms // 1000 if ms >= 0 else -((-ms + 999) // 1000)
    cdef int milli = <int>(ms - sec * 1000)
    if sec != ts.sec:
        ts.length = _sc_format_seconds(ts.text, sec)
        ts.sec = sec
    memcpy(o, ts.text, <size_t>ts.length)
    o += ts.length
    o[0] = 46
    o[1] = <char>(48 + milli // 100)
    _sc_2(o + 2, milli % 100)
    o[4] = 90
    return ts.length + 5


cdef inline Py_ssize_t _sc_format_v3(char* o, const char* prefix, Py_ssize_t plen, _Slot* slot,
                                     _TsCache* ts) noexcept:
    # prefix + partition + ,"offset":N,"timestamp":"...Z" + key/value + "}\r\n"; the length
    # written (at most plen + _SC_MAX_REPORT).
    cdef char* start = o
    memcpy(o, prefix, <size_t>plen)
    o += plen
    o += _sc_int(o, slot.partition)
    memcpy(o, b',"offset":', 10)
    o += 10
    o += _sc_int(o, slot.offset)
    memcpy(o, b',"timestamp":"', 14)
    o += 14
    o += _sc_format_ms(o, slot.timestamp, ts)
    o[0] = 34
    o += 1
    if slot.key_type:
        o += _sc_side(o, b',"key":', 7, slot.key_type, slot.key_size)
    if slot.value_type:
        o += _sc_side(o, b',"value":', 9, slot.value_type, slot.value_size)
    o[0] = 125
    o[1] = 13
    o[2] = 10
    return o + 3 - start


cdef inline Py_ssize_t _sc_format_offsets(char* o, _Slot* slot, int mode) noexcept:
    # {"partition":P,"offset":O} (FORMAT_V2 adds "error_code":null,"error":null) and a comma;
    # the length written (at most _SC_MAX_REPORT).
    cdef char* start = o
    memcpy(o, b'{"partition":', 13)
    o += 13
    o += _sc_int(o, slot.partition)
    memcpy(o, b',"offset":', 10)
    o += 10
    o += _sc_int(o, slot.offset)
    if mode == FORMAT_V2:
        memcpy(o, b',"error_code":null,"error":null', 31)
        o += 31
    o[0] = 125
    o[1] = 44
    return o + 2 - start


cdef void _sc_free_out() noexcept:
    global _sc_out, _sc_out_cap
    free(_sc_out)
    _sc_out = NULL
    _sc_out_cap = 0
