# The disk spool's record frames (gateway/produce/spool): encoded and checked in C, a whole batch
# per call, so that spooling costs no Python call per record.
#
# A frame, every integer little-endian:
#
#     u32 body_len     bytes after this 8-byte frame head (SPOOL_BODY_FIXED and more)
#     u32 crc          CRC32C (Castagnoli) of the body_len field's 4 bytes, then of the body
#     body:
#       u64 seq          the spool's sequence number of the record
#       i64 timestamp_ms the record's Kafka timestamp (the append time when the record had none)
#       i64 spooled_ms   wall clock of the append (the age of the oldest record is read from it)
#       i32 partition    -1: the partitioner decides
#       u16 topic_len
#       u16 header_count 0xFFFF: no headers field (None), else the number of headers
#       i32 key_len      -1: null key
#       i32 value_len    -1: null value
#       topic bytes (UTF-8), key bytes, value bytes
#       header_count times: u16 name_len, i32 value_len (-1: null), name (UTF-8), value
#
# The checksum is computed with the SSE4.2 crc32 instruction where the CPU has it, else by a
# slicing-by-8 table (the same function; crc32c_portable() gives the table's result for the
# tests). bench/spool.py and the package docstring say why CRC32C, and why in here.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from cpython.list cimport PyList_GET_SIZE
from libc.string cimport memcmp, memcpy

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    static uint32_t spool_crc_table[8][256];
    static int spool_crc_hw = 0;

    static void spool_crc_init(void) {
        int i, t, k;
        for (i = 0; i < 256; i++) {
            uint32_t c = (uint32_t)i;
            for (k = 0; k < 8; k++)
                c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
            spool_crc_table[0][i] = c;
        }
        for (i = 0; i < 256; i++) {
            uint32_t c = spool_crc_table[0][i];
            for (t = 1; t < 8; t++) {
                c = spool_crc_table[0][c & 0xff] ^ (c >> 8);
                spool_crc_table[t][i] = c;
            }
        }
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        __builtin_cpu_init();
        spool_crc_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    #endif
    }

    /* CRC32C of p[0:n] continued from crc (0 to start): the value zlib.crc32's convention
       would give with the Castagnoli polynomial. */
    static uint32_t spool_crc_sw(uint32_t crc, const unsigned char *p, size_t n) {
        const uint32_t (*T)[256] = (const uint32_t (*)[256])spool_crc_table;
        crc = ~crc;
        while (n >= 8) {
            uint32_t lo = ((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
                           | ((uint32_t)p[3] << 24)) ^ crc;
            uint32_t hi = (uint32_t)p[4] | ((uint32_t)p[5] << 8) | ((uint32_t)p[6] << 16)
                          | ((uint32_t)p[7] << 24);
            crc = T[7][lo & 0xff] ^ T[6][(lo >> 8) & 0xff] ^ T[5][(lo >> 16) & 0xff]
                  ^ T[4][lo >> 24] ^ T[3][hi & 0xff] ^ T[2][(hi >> 8) & 0xff]
                  ^ T[1][(hi >> 16) & 0xff] ^ T[0][hi >> 24];
            p += 8;
            n -= 8;
        }
        while (n--)
            crc = T[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        return ~crc;
    }

    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #include <nmmintrin.h>
    __attribute__((target("sse4.2")))
    static uint32_t spool_crc_sse42(uint32_t crc, const unsigned char *p, size_t n) {
        uint64_t c = (uint32_t)~crc;
        uint64_t w;
        while (n >= 8) {
            memcpy(&w, p, 8);
            c = _mm_crc32_u64(c, w);
            p += 8;
            n -= 8;
        }
        while (n--)
            c = _mm_crc32_u8((uint32_t)c, *p++);
        return ~(uint32_t)c;
    }
    #define SPOOL_HAVE_SSE42 1
    #else
    #define SPOOL_HAVE_SSE42 0
    static uint32_t spool_crc_sse42(uint32_t crc, const unsigned char *p, size_t n) {
        return spool_crc_sw(crc, p, n);
    }
    #endif

    static inline uint32_t spool_crc(uint32_t crc, const unsigned char *p, size_t n) {
        return spool_crc_hw ? spool_crc_sse42(crc, p, n) : spool_crc_sw(crc, p, n);
    }
    """
    void spool_crc_init() noexcept nogil
    uint32_t spool_crc_sw(uint32_t crc, const unsigned char* p, size_t n) noexcept nogil
    uint32_t spool_crc(uint32_t crc, const unsigned char* p, size_t n) noexcept nogil
    int spool_crc_hw


spool_crc_init()

cdef enum:
    SPOOL_FRAME_HEAD = 8
    SPOOL_BODY_FIXED = 40
    SPOOL_NO_HEADERS = 0xFFFF
    # Decoder outcomes (gateway/produce/spool/frames.py names them).
    SPOOL_OK = 0            # stopped at `end` or at a limit, every frame before it good
    SPOOL_PARTIAL = 1       # the frame at `pos` ends past `end`: `need` bytes from `pos`
    SPOOL_BAD_LENGTH = 2    # the frame's length field is out of range
    SPOOL_BAD_CHECKSUM = 3
    SPOOL_BAD_SEQ = 4       # a good frame, but not the sequence number expected
    SPOOL_BAD_LAYOUT = 5    # a good checksum over fields that do not fill the body exactly

# The largest frame body; the length field of a torn or corrupt frame is checked against it
# before anything is read.
cdef int64_t SPOOL_MAX_BODY = 0x7FFFFFFF


def crc32c(const unsigned char[::1] data not None, uint32_t value=0):
    """CRC32C (Castagnoli) of ``data``, continued from ``value`` (as ``zlib.crc32`` chains)."""
    cdef size_t n = data.shape[0]
    if n == 0:
        return value
    with nogil:
        value = spool_crc(value, &data[0], n)
    return value


def crc32c_portable(const unsigned char[::1] data not None, uint32_t value=0):
    """``crc32c`` computed by the table, never by the CPU instruction (the tests compare)."""
    cdef size_t n = data.shape[0]
    if n == 0:
        return value
    return spool_crc_sw(value, &data[0], n)


def crc32c_hardware():
    """True when ``crc32c`` uses the CPU's crc32 instruction (SSE4.2)."""
    return spool_crc_hw != 0


cdef inline void _spool_u16(unsigned char* p, uint32_t v) noexcept:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF


cdef inline void _spool_u32(unsigned char* p, uint32_t v) noexcept:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef inline void _spool_u64(unsigned char* p, uint64_t v) noexcept:
    _spool_u32(p, <uint32_t>(v & 0xFFFFFFFF))
    _spool_u32(p + 4, <uint32_t>(v >> 32))


cdef inline uint32_t _spool_get_u16(const unsigned char* p) noexcept:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8)


cdef inline uint32_t _spool_get_u32(const unsigned char* p) noexcept:
    return (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
            | (<uint32_t>p[3] << 24))


cdef inline uint64_t _spool_get_u64(const unsigned char* p) noexcept:
    return <uint64_t>_spool_get_u32(p) | (<uint64_t>_spool_get_u32(p + 4) << 32)


cdef inline Py_ssize_t _spool_blob_len(object v, str what) except -2:
    # Length of a key, value or header value: bytes, or None (-1).
    if v is None:
        return -1
    if PyBytes_Check(v):
        return PyBytes_GET_SIZE(v)
    raise TypeError(f"{what} must be bytes or None, not {type(v).__name__}")


cdef Py_ssize_t _spool_headers_len(object headers, Py_ssize_t* count) except -1:
    # Bytes the headers take in a frame (names as UTF-8); count: how many (SPOOL_NO_HEADERS: None).
    cdef Py_ssize_t total = 0, nlen = 0, vlen
    cdef object name
    cdef object value
    if headers is None:
        count[0] = SPOOL_NO_HEADERS
        return 0
    if not isinstance(headers, (list, tuple)):
        raise TypeError(f"headers must be a list or None, not {type(headers).__name__}")
    if len(headers) >= SPOOL_NO_HEADERS:
        raise ValueError(f"a record has at most {SPOOL_NO_HEADERS - 1} headers, not {len(headers)}")
    count[0] = len(headers)
    for item in headers:
        if not isinstance(item, tuple) or len(<tuple>item) != 2:
            raise TypeError("a header must be a (name, value) tuple")
        name = (<tuple>item)[0]
        value = (<tuple>item)[1]
        if isinstance(name, str):
            PyUnicode_AsUTF8AndSize(name, &nlen)
        elif PyBytes_Check(name):
            nlen = PyBytes_GET_SIZE(name)
        else:
            raise TypeError(f"a header name must be str or bytes, not {type(name).__name__}")
        if nlen > 0xFFFF:
            raise ValueError(f"a header name is at most 65535 bytes, not {nlen}")
        vlen = _spool_blob_len(value, "a header value")
        total += 6 + nlen + (vlen if vlen > 0 else 0)
    return total


cdef inline Py_ssize_t _spool_record_len(object rec, Py_ssize_t topic_len) except -1:
    # Frame bytes of one record (the splitter's tuple: partition, key, value, headers, timestamp
    # at 1..5), its fields checked.
    cdef Py_ssize_t klen, vlen, hcount, body
    if not isinstance(rec, tuple) or len(<tuple>rec) < 6:
        raise TypeError("a spooled record is a tuple (index, partition, key, value, headers, "
                        "timestamp_ms, ...)")
    klen = _spool_blob_len((<tuple>rec)[2], "a key")
    vlen = _spool_blob_len((<tuple>rec)[3], "a value")
    body = (SPOOL_BODY_FIXED + topic_len + (klen if klen > 0 else 0) + (vlen if vlen > 0 else 0)
            + _spool_headers_len((<tuple>rec)[4], &hcount))
    if body > SPOOL_MAX_BODY:
        raise ValueError(f"a spooled record is at most {SPOOL_MAX_BODY} bytes, not {body}")
    return SPOOL_FRAME_HEAD + body


cdef inline unsigned char* _spool_put_blob(unsigned char* p, object v) noexcept:
    cdef Py_ssize_t n
    if v is not None:
        n = PyBytes_GET_SIZE(v)
        memcpy(p, PyBytes_AS_STRING(v), n)
        p += n
    return p


cdef Py_ssize_t _spool_write_record(unsigned char* frame, tuple rec, const char* topic,
                                    Py_ssize_t topic_len, uint64_t seq, int64_t now_ms) except -1:
    # Writes one frame whose length _spool_record_len() gave; returns its length.
    cdef int64_t ts = rec[5]
    cdef int32_t partition = rec[1]
    cdef object key = rec[2]
    cdef object value = rec[3]
    cdef object headers = rec[4]
    cdef object name
    cdef object hvalue
    cdef Py_ssize_t hcount = SPOOL_NO_HEADERS, nlen = 0
    cdef const char* nptr
    cdef unsigned char* b = frame + SPOOL_FRAME_HEAD
    cdef unsigned char* p = b + SPOOL_BODY_FIXED
    cdef uint32_t body_len, crc
    if headers is not None:
        hcount = len(headers)
    _spool_u64(b, seq)
    _spool_u64(b + 8, <uint64_t>(ts if ts != 0 else now_ms))
    _spool_u64(b + 16, <uint64_t>now_ms)
    _spool_u32(b + 24, <uint32_t>partition)
    _spool_u16(b + 28, <uint32_t>topic_len)
    _spool_u16(b + 30, <uint32_t>hcount)
    _spool_u32(b + 32, <uint32_t>(-1 if key is None else PyBytes_GET_SIZE(key)))
    _spool_u32(b + 36, <uint32_t>(-1 if value is None else PyBytes_GET_SIZE(value)))
    memcpy(p, topic, topic_len)
    p += topic_len
    p = _spool_put_blob(p, key)
    p = _spool_put_blob(p, value)
    if headers is not None:
        for item in headers:
            name = (<tuple>item)[0]
            hvalue = (<tuple>item)[1]
            if isinstance(name, str):
                nptr = PyUnicode_AsUTF8AndSize(name, &nlen)
            else:
                nptr = PyBytes_AS_STRING(name)
                nlen = PyBytes_GET_SIZE(name)
            _spool_u16(p, <uint32_t>nlen)
            _spool_u32(p + 2, <uint32_t>(-1 if hvalue is None else PyBytes_GET_SIZE(hvalue)))
            memcpy(p + 6, nptr, nlen)
            p = _spool_put_blob(p + 6 + nlen, hvalue)
    body_len = <uint32_t>(p - b)
    _spool_u32(frame, body_len)
    crc = spool_crc(0, frame, 4)
    crc = spool_crc(crc, b, body_len)
    _spool_u32(frame + 4, crc)
    return SPOOL_FRAME_HEAD + body_len


def spool_encode(list records not None, str topic not None, uint64_t first_seq, int64_t now_ms):
    """The frames of ``records`` (the splitter's tuples, gateway/produce/items.py: partition, key,
    value, headers and timestamp_ms are read, the rest ignored) as one ``bytes``, numbered from
    ``first_seq``; a timestamp of 0 becomes ``now_ms``, which is also each frame's spooled
    time. TypeError/ValueError/OverflowError for a field that cannot be spooled, and then
    nothing is encoded."""
    cdef bytes btopic = topic.encode("utf-8")
    cdef Py_ssize_t topic_len = PyBytes_GET_SIZE(btopic)
    cdef Py_ssize_t n = len(records), i, total = 0, done = 0
    cdef int32_t partition
    cdef int64_t ts
    cdef tuple rec
    cdef bytes out
    cdef unsigned char* base
    if topic_len > 0xFFFF:
        raise ValueError(f"a topic name is at most 65535 bytes, not {topic_len}")
    for i in range(n):
        total += _spool_record_len(records[i], topic_len)
        rec = <tuple>records[i]
        partition = rec[1]  # (OverflowError/TypeError here, before anything is written)
        ts = rec[5]
    out = PyBytes_FromStringAndSize(NULL, total)
    base = <unsigned char*>PyBytes_AS_STRING(out)
    for i in range(n):
        done += _spool_write_record(base + done, <tuple>records[i], PyBytes_AS_STRING(btopic),
                                    topic_len, first_seq + <uint64_t>i, now_ms)
    if done != total:  # the records changed between the two passes: impossible without a bug
        raise RuntimeError(f"spool_encode wrote {done} bytes, expected {total}")
    return out


cdef object _spool_blob(const unsigned char* p, int64_t n):
    if n < 0:
        return None
    return PyBytes_FromStringAndSize(<const char*>p, n)


cdef object _spool_header_name(const unsigned char* p, Py_ssize_t n):
    # A header name back as str; bytes when it is not UTF-8 (a name that was given as bytes).
    try:
        return PyUnicode_DecodeUTF8(<char*>p, n, NULL)
    except UnicodeDecodeError:
        return PyBytes_FromStringAndSize(<const char*>p, n)


def spool_decode(bytes buf not None, Py_ssize_t pos, Py_ssize_t end, uint64_t seq,
                 Py_ssize_t max_records, Py_ssize_t max_bytes, list out):
    """Check, and (with a list ``out``) decode, the frames in ``buf[pos:end]``, starting with
    sequence number ``seq``. Records are appended to ``out`` as ``(seq, topic, partition, key,
    value, headers, timestamp_ms)``; with ``out=None`` frames are only checked (no object per
    record). Stops at ``end``, after ``max_records`` records, or before a record that would
    take the frames past ``max_bytes`` (but for the first record of an empty ``out``, which is
    always taken), or at a frame that is cut short or bad.

    Returns ``(pos, seq, status, need, first_spooled_ms, last_spooled_ms)``: where it stopped,
    the next sequence number expected, SPOOL_OK or why it stopped (SPOOL_PARTIAL: the frame at
    ``pos`` needs ``need`` bytes; a SPOOL_BAD_* code: the frame at ``pos`` is corrupt), and the
    spooled times of the first and last good frames (-1 when none)."""
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t taken = 0, start_bytes = pos, frame_len, q, k
    cdef int64_t body_len, klen, vlen, hvlen, first_ms = -1, last_ms = -1, spooled
    cdef uint32_t crc, tlen, hcount, nlen
    cdef const unsigned char* f
    cdef const unsigned char* body
    cdef const unsigned char* prev_topic = NULL
    cdef uint32_t prev_tlen = 0
    cdef object topic = None
    cdef object headers
    cdef int status = SPOOL_OK
    cdef Py_ssize_t need = 0
    if end > size or end < 0:
        end = size
    if pos < 0:
        raise ValueError("pos must not be negative")
    while pos < end and taken < max_records:
        if end - pos < SPOOL_FRAME_HEAD:
            status = SPOOL_PARTIAL
            need = SPOOL_FRAME_HEAD
            break
        f = b + pos
        body_len = _spool_get_u32(f)
        if body_len < SPOOL_BODY_FIXED or body_len > SPOOL_MAX_BODY:
            status = SPOOL_BAD_LENGTH
            break
        frame_len = SPOOL_FRAME_HEAD + <Py_ssize_t>body_len
        if frame_len > end - pos:
            status = SPOOL_PARTIAL
            need = frame_len
            break
        if (taken > 0 or (out is not None and PyList_GET_SIZE(out) > 0)) \
                and pos - start_bytes + frame_len > max_bytes:
            break
        body = f + SPOOL_FRAME_HEAD
        crc = spool_crc(0, f, 4)
        crc = spool_crc(crc, body, <size_t>body_len)
        if crc != _spool_get_u32(f + 4):
            status = SPOOL_BAD_CHECKSUM
            break
        if _spool_get_u64(body) != seq:
            status = SPOOL_BAD_SEQ
            break
        # The fields must fill the body exactly.
        tlen = _spool_get_u16(body + 28)
        hcount = _spool_get_u16(body + 30)
        klen = <int32_t>_spool_get_u32(body + 32)
        vlen = <int32_t>_spool_get_u32(body + 36)
        q = SPOOL_BODY_FIXED + tlen + (klen if klen > 0 else 0) + (vlen if vlen > 0 else 0)
        if klen < -1 or vlen < -1 or q > body_len:
            status = SPOOL_BAD_LAYOUT
            break
        if hcount != SPOOL_NO_HEADERS:
            k = 0
            while k < <Py_ssize_t>hcount and q + 6 <= body_len:
                nlen = _spool_get_u16(body + q)
                hvlen = <int32_t>_spool_get_u32(body + q + 2)
                if hvlen < -1:
                    break
                q += 6 + nlen + (hvlen if hvlen > 0 else 0)
                k += 1
            if k != <Py_ssize_t>hcount:
                status = SPOOL_BAD_LAYOUT
                break
        if q != body_len:
            status = SPOOL_BAD_LAYOUT
            break
        spooled = <int64_t>_spool_get_u64(body + 16)
        if first_ms < 0:
            first_ms = spooled
        last_ms = spooled
        if out is not None:
            q = SPOOL_BODY_FIXED
            if prev_topic == NULL or tlen != prev_tlen or memcmp(prev_topic, body + q, tlen) != 0:
                topic = PyUnicode_DecodeUTF8(<char*>body + q, tlen, "surrogateescape")
                prev_topic = body + q
                prev_tlen = tlen
            q += tlen
            key = _spool_blob(body + q, klen)
            q += klen if klen > 0 else 0
            value = _spool_blob(body + q, vlen)
            q += vlen if vlen > 0 else 0
            if hcount == SPOOL_NO_HEADERS:
                headers = None
            else:
                headers = []
                for k in range(<Py_ssize_t>hcount):
                    nlen = _spool_get_u16(body + q)
                    hvlen = <int32_t>_spool_get_u32(body + q + 2)
                    q += 6
                    name = _spool_header_name(body + q, nlen)
                    q += nlen
                    headers.append((name, _spool_blob(body + q, hvlen)))
                    q += hvlen if hvlen > 0 else 0
            out.append((seq, topic, <int32_t>_spool_get_u32(body + 24), key, value, headers,
                        <int64_t>_spool_get_u64(body + 8)))
        seq += 1
        taken += 1
        pos += frame_len
    return pos, seq, status, need, first_ms, last_ms
