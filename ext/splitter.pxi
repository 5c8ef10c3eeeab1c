# JsonSplitter: the incremental concatenated-JSON record splitter of the v3 produce path
# (docs/api.md §1). Docstrings live in gateway/_speedups.pyi; the pure-Python reference twin is
# gateway/produce/splitter.py. The twins must give identical items and byte-identical messages
# for any body split any way (tests/unit/test_splitter.py compares them): change both together.
#
# Two passes per record, both over C bytes: a string-aware bracket scan finds the record's end
# (so a record may be split across feed() calls at any byte; only a record spanning chunks is
# copied, into a buffer bounded by max_record_bytes), then a strict RFC 8259 recursive-descent
# parser decodes the complete record bytes in place and checks the fields. Parser methods return
# the next index, or -1 with the error stashed in _err_*; -2 means a Python exception is set.

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.number cimport PyNumber_Index
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memchr, memcmp, memcpy

cdef enum:
    # Containers nested deeper than this are refused; the record object itself is level 1.
    _SPL_MAX_DEPTH = 64
    # Client-chosen text (unknown names, partition literals) is clipped to this many code points.
    _SPL_CLIP = 64
    # A record buffer or scratch area larger than this is freed after use instead of kept.
    _SPL_KEEP_BYTES = 65536
    # simdjson (jsonsplit.pxi) reads first, and this module's parser decides what it does not
    # accept: the complete records of a chunk, when at least _SPL_STREAM_MIN bytes of it are
    # left at a record boundary (one iterate_many pass); and a record that spanned chunks, when
    # it is at least _SPL_SIMD_MIN bytes long. bench/splitjson.py has the figures.
    _SPL_STREAM_MIN = 256
    _SPL_SIMD_MIN = 1024
    # Bounds on what simdjson reads at once (its padded copy and its index take several times
    # the input): a window of a chunk (a longer chunk takes several passes), and a record
    # spanning chunks (a longer one is this module's alone).
    _SPL_STREAM_WINDOW = 131072
    _SPL_SIMD_MAX = 1048576
    # Field ids of a record; bit (1 << id) marks a field as seen.
    _SPL_F_PARTITION = 1
    _SPL_F_HEADERS = 2
    _SPL_F_KEY = 3
    _SPL_F_VALUE = 4
    _SPL_F_TIMESTAMP = 5
    # Kinds of a key/value "data" field.
    _SPL_D_ABSENT = 0
    _SPL_D_NULL = 1
    _SPL_D_STRING = 2
    _SPL_D_OTHER = 3
    # Data types.
    _SPL_T_NONE = 0
    _SPL_T_BINARY = 1
    _SPL_T_JSON = 2
    _SPL_T_STRING = 3

cdef Py_ssize_t _SPL_MIN_LIMIT = 2
# The simdjson settings in force (the benchmark and the tests move them: splitter_simdjson()).
cdef Py_ssize_t _spl_stream_min = _SPL_STREAM_MIN
cdef Py_ssize_t _spl_simd_min = _SPL_SIMD_MIN
cdef Py_ssize_t _SPL_MAX_LIMIT = 1 << 31
cdef long long _SPL_INT32_MAX = 2147483647

cdef str _SPL_TIMESTAMP_REASON = (
    "timestamp must be an ISO-8601 date-time such as 2026-11-21T10:14:42.123Z")
cdef tuple _SPL_RECORD_FIELD_NAMES = ("", "partition_id", "headers", "key", "value", "timestamp")
cdef tuple _SPL_TYPE_NAMES = (None, "BINARY", "JSON", "STRING")

cdef str _spl_desc(int c):
    # Same wording as describe_byte() in the twin.
    if c < 0:
        return "end of record"
    if 0x20 <= c <= 0x7E:
        return f"'{chr(c)}'"
    return f"byte 0x{c:02x}"


cdef str _spl_text(const unsigned char* s, Py_ssize_t n):
    # Validated UTF-8 to str, clipped for messages.
    cdef str t = PyUnicode_DecodeUTF8(<char*>s, n, NULL)
    if len(t) > _SPL_CLIP:
        t = t[:_SPL_CLIP] + "..."
    return t


cdef inline bint _spl_is(const unsigned char* s, Py_ssize_t n, const char* lit,
                         Py_ssize_t ln) noexcept:
    return n == ln and memcmp(s, lit, <size_t>ln) == 0



cdef Py_ssize_t _spl_compact_into(unsigned char* o, const unsigned char* b,
                                  Py_ssize_t n) noexcept nogil:
    # Compact JSON text of the validated value b[0:n] at o: whitespace outside strings dropped,
    # everything else (escapes included) kept verbatim. Returns the length (at most n).
    cdef Py_ssize_t i = 0, k = 0
    cdef unsigned char c
    cdef bint in_string = False
    while i < n:
        c = b[i]
        if in_string:
            if c == 92:
                o[k] = c
                o[k + 1] = b[i + 1]
                k += 2
                i += 2
                continue
            if c == 34:
                in_string = False
        elif c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
            continue
        elif c == 34:
            in_string = True
        o[k] = c
        k += 1
        i += 1
    return k


def splitter_simdjson(stream_min=None, record_min=None):
    global _spl_stream_min, _spl_simd_min
    cdef tuple old = (_spl_stream_min, _spl_simd_min)
    if stream_min is not None:
        _spl_stream_min = PyNumber_Index(stream_min)
    if record_min is not None:
        _spl_simd_min = PyNumber_Index(record_min)
    return old


# gateway.produce.items.RecordError, once the first splitter is made.
cdef object _spl_RecordError = None


@cython.final
cdef class JsonSplitter:
    cdef readonly Py_ssize_t records
    cdef readonly Py_ssize_t offset
    cdef readonly bint failed
    cdef Py_ssize_t _max
    cdef bint _finished
    # Scanner state, kept between feed() calls.
    cdef bint _in_record
    cdef bint _in_string
    cdef bint _escape
    cdef Py_ssize_t _depth
    cdef Py_ssize_t _start
    # A record spanning feed() calls; never more than _max bytes.
    cdef unsigned char* _buf
    cdef Py_ssize_t _buf_len
    cdef Py_ssize_t _buf_cap
    # Unescaped strings and compacted JSON; never larger than the record.
    cdef unsigned char* _scratch
    cdef Py_ssize_t _scratch_cap
    cdef object _RecordError
    # The record being decoded (valid only inside _decode): its bytes, length, last results.
    cdef const unsigned char* _b
    cdef Py_ssize_t _e
    cdef bint _esc
    cdef bint _more
    cdef bint _is_int
    cdef const unsigned char* _np
    cdef Py_ssize_t _nn
    cdef Py_ssize_t _err_pos
    cdef int _err_code
    cdef bint _err_syntax
    cdef object _err_reason
    cdef long long _r_partition
    cdef long long _r_timestamp
    cdef object _r_headers
    cdef object _r_key
    cdef object _r_value
    cdef object _r_key_type
    cdef object _r_value_type
    cdef object _side_data
    cdef int _side_type
    # Whether the last simdjson pass stopped at a record it did not take (_feed_stream).
    cdef bint _stream_refused
    # The length of the last record read.
    cdef Py_ssize_t _last_len

    def __init__(self, max_record_bytes=2 * 1024 * 1024):
        cdef object limit = PyNumber_Index(max_record_bytes)
        if not _SPL_MIN_LIMIT <= limit <= _SPL_MAX_LIMIT:
            raise ValueError(
                f"max_record_bytes must be between {_SPL_MIN_LIMIT} and {_SPL_MAX_LIMIT}")
        global _spl_RecordError
        if _spl_RecordError is None:
            # Imported on first use, not at module level: gateway.produce imports this module.
            from gateway.produce.items import RecordError
            _spl_RecordError = RecordError
        self._RecordError = _spl_RecordError
        self._max = limit
        self.records = 0
        self.offset = 0
        self.failed = False
        self._finished = False
        self._in_record = False
        self._in_string = False
        self._escape = False
        self._depth = 0
        self._start = 0
        self._buf_len = 0
        self._last_len = 0

    def __dealloc__(self):
        PyMem_Free(self._buf)
        PyMem_Free(self._scratch)

    @property
    def buffered(self):
        return self._buf_len

    # ------------------------------------------------------------ splitting

    def feed(self, data):
        return self.feed_items(data)

    cdef list feed_items(self, data):
        # (feed() for C callers: the v3 session)
        cdef Py_buffer view
        cdef list out = []
        if self.failed:
            return out
        if self._finished:
            raise RuntimeError("JsonSplitter.feed() called after finish()")
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self._feed(<const unsigned char*>view.buf, view.len, out)
        finally:
            PyBuffer_Release(&view)
        return out

    def finish(self):
        return self.finish_items()

    cdef list finish_items(self):
        cdef list out = []
        if self.failed or self._finished:
            return out
        self._finished = True
        if self._in_record:
            self._fatal(out, self._start, "body ended inside the record")
        return out

    cdef int _feed(self, const unsigned char* p, Py_ssize_t n, list out) except -1:
        cdef Py_ssize_t base = self.offset  # body offset of p[0]
        cdef Py_ssize_t i = 0, j, limit
        cdef Py_ssize_t rec_i = 0  # index in p of the record's first byte (0: it began earlier)
        cdef unsigned char c
        cdef bint stream = True
        while i < n:
            if not self._in_record:
                if stream and n - i >= _spl_stream_min and n - i > self._last_len:
                    # Window by window while simdjson reads all a window's records; from a
                    # record it refuses, or one not complete in the chunk or the window, this
                    # module reads the rest of the chunk. Not on a rest shorter than the last
                    # record: with records of about one size it would hold no complete one,
                    # and simdjson's pass over it would be lost.
                    limit = n if n - i <= _SPL_STREAM_WINDOW else i + _SPL_STREAM_WINDOW
                    j = self._feed_stream(p, i, limit, base, out)
                    if j == i or limit == n or self._stream_refused:
                        stream = False
                    i = j
                    continue
                # RFC 8259 §2 whitespace only between records (docs/api.md §1).
                c = p[i]
                while c == 32 or c == 10 or c == 13 or c == 9:
                    i += 1
                    if i == n:
                        break
                    c = p[i]
                if i == n:
                    break
                if c != 123:
                    self._fatal(out, base + i,
                                f"expected '{{' to start a record, found {_spl_desc(c)}")
                    self.offset = base + i
                    return 0
                self._in_record = True
                self._in_string = False
                self._escape = False
                self._depth = 0
                self._start = base + i
                rec_i = i
            limit = self._start + self._max - base
            if limit > n:
                limit = n
            j = self._scan(p, i, limit)
            if j >= 0:
                if self._buf_len == 0:
                    # Whole record inside this chunk: decode it in place, no copy.
                    item = self._decode(p + rec_i, j - rec_i, self._start)
                else:
                    self._append(p, j)
                    try:
                        item = self._decode(self._buf, self._buf_len, self._start)
                    finally:
                        self._drop_buf(False)
                out.append(item)
                self.records += 1
                self._in_record = False
                self._last_len = base + j - self._start
                i = j
            elif limit < n:
                self._fatal(out, self._start, f"record exceeds the {self._max}-byte limit")
                self.offset = base + limit
                return 0
            else:
                self._append(p + rec_i, n - rec_i)
                i = n
        self.offset = base + n
        return 0

    cdef Py_ssize_t _feed_stream(self, const unsigned char* p, Py_ssize_t i, Py_ssize_t n,
                                 Py_ssize_t base, list out) except -1:
        # The complete records of p[i:n] that simdjson accepts, in one iterate_many pass; returns
        # the index after the last of them, from where the scanner goes on: a record simdjson
        # does not accept or that is over the limit, or one not complete in this chunk.
        cdef gw_js_reader* r = _js_reader()
        cdef gw_js_record rec
        cdef size_t start, end
        cdef Py_ssize_t done = i
        cdef int rc = gw_js_stream_feed(r, <const char*>p + i, <size_t>(n - i), 0)
        if rc == -1:
            raise MemoryError()
        self._stream_refused = True
        try:
            while rc == 0:
                rc = gw_js_stream_next(r, &rec, &start, &end)
                if rc == 0:
                    self._stream_refused = False  # all complete records read
                if rc != 1 or <Py_ssize_t>(end - start) > self._max:
                    break
                item = _js_item(&rec, self.records)
                if item is _JS_REFUSED:
                    break
                out.append(item)
                self.records += 1
                self._last_len = <Py_ssize_t>(end - start)
                done = i + <Py_ssize_t>end
                rc = 0
        finally:
            gw_js_reader_trim(r)
        return done

    cdef int _fatal(self, list out, Py_ssize_t off, str reason) except -1:
        cdef Py_ssize_t index = self.records
        out.append(self._RecordError(index, 400, f"record {index} at byte {off}: {reason}", True))
        self.records = index + 1
        self.failed = True
        self._in_record = False
        self._drop_buf(True)
        return 0

    cdef Py_ssize_t _scan(self, const unsigned char* p, Py_ssize_t i,
                          Py_ssize_t limit) noexcept:
        # Index after the byte that closes the record, or -1 when not closed before limit.
        cdef Py_ssize_t depth = self._depth
        cdef bint in_string = self._in_string
        cdef unsigned char c
        cdef Py_ssize_t plain = 0  # bytes of the string run read one by one
        cdef Py_ssize_t quote = -1  # index of the next '"' from i (limit: none), once looked up
        cdef const unsigned char* q
        if self._escape:
            # The previous chunk ended on a backslash inside a string: skip the escaped byte.
            if i >= limit:
                return -1
            self._escape = False
            i += 1
        while i < limit:
            c = p[i]
            if in_string and c != 34 and c != 92:
                plain += 1
                if plain < 32:
                    i += 1
                    continue
                # A long string (base64 data, say): memchr's word-wide search for the next '"'
                # and for a '\' before it. The '"' found is kept until i passes it, so a string
                # of many escapes is still read once.
                plain = 0
                if quote < i:
                    q = <const unsigned char*>memchr(p + i, 34, <size_t>(limit - i))
                    quote = limit if q == NULL else q - p
                q = <const unsigned char*>memchr(p + i, 92, <size_t>(quote - i))
                i = quote if q == NULL else q - p
                if i >= limit:
                    break
                c = p[i]
            if not _spl_scan[c]:
                i += 1
                continue
            if in_string:
                if c == 34:
                    in_string = False
                elif c == 92:
                    if i + 1 >= limit:
                        self._escape = True
                        break
                    i += 1
            elif c == 34:
                in_string = True
                plain = 0
            elif c == 123 or c == 91:
                depth += 1
            elif c == 125 or c == 93:
                depth -= 1
                if depth == 0:
                    self._depth = 0
                    self._in_string = False
                    return i + 1
            i += 1
        self._depth = depth
        self._in_string = in_string
        return -1

    cdef int _append(self, const unsigned char* src, Py_ssize_t n) except -1:
        cdef Py_ssize_t need = self._buf_len + n, cap
        cdef unsigned char* grown
        if need > self._buf_cap:
            # Grow geometrically but never past the record limit (need <= _max always holds).
            cap = self._buf_cap * 2
            if cap < 4096:
                cap = 4096
            if cap < need:
                cap = need
            if cap > self._max:
                cap = self._max
            grown = <unsigned char*>PyMem_Realloc(self._buf, <size_t>cap)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._buf_cap = cap
        memcpy(self._buf + self._buf_len, src, <size_t>n)
        self._buf_len = need
        return 0

    cdef void _drop_buf(self, bint free_all) noexcept:
        self._buf_len = 0
        if free_all or self._buf_cap > _SPL_KEEP_BYTES:
            PyMem_Free(self._buf)
            self._buf = NULL
            self._buf_cap = 0

    cdef unsigned char* _scratch_for(self, Py_ssize_t n) except NULL:
        cdef unsigned char* grown
        if n > self._scratch_cap:
            grown = <unsigned char*>PyMem_Realloc(self._scratch, <size_t>(n if n > 256 else 256))
            if grown == NULL:
                raise MemoryError()
            self._scratch = grown
            self._scratch_cap = n if n > 256 else 256
        return self._scratch

    # ------------------------------------------------------------ decoding

    cdef object _decode(self, const unsigned char* b, Py_ssize_t n, Py_ssize_t base):
        # Decode the complete record b[0:n]; base is its body offset.
        cdef Py_ssize_t index = self.records
        cdef Py_ssize_t pos
        cdef int code
        cdef object reason
        if _spl_simd_min <= n <= _SPL_SIMD_MAX:
            item = _js_read_record(b, n, index)
            if item is not _JS_REFUSED:
                return item
        self._b = b
        self._e = n
        self._r_partition = -1
        self._r_timestamp = 0
        self._r_headers = None
        self._r_key = None
        self._r_value = None
        self._r_key_type = None
        self._r_value_type = None
        try:
            if self._record() >= 0:
                return (index, self._r_partition, self._r_key, self._r_value, self._r_headers,
                        self._r_timestamp, self._r_key_type, self._r_value_type)
            if not self._err_syntax:
                # A field error: a JSON syntax error anywhere in the record takes precedence.
                pos = self._err_pos
                code = self._err_code
                reason = self._err_reason
                if self._value(0, 0) >= 0:
                    self._err_pos = pos
                    self._err_code = code
                    self._err_reason = reason
            return self._RecordError(
                index, self._err_code,
                f"record {index} at byte {base + self._err_pos}: {self._err_reason}", False)
        finally:
            self._b = NULL
            self._e = 0
            self._r_headers = None
            self._r_key = None
            self._r_value = None
            self._side_data = None
            self._err_reason = None
            if self._scratch_cap > _SPL_KEEP_BYTES:
                PyMem_Free(self._scratch)
                self._scratch = NULL
                self._scratch_cap = 0

    cdef Py_ssize_t _syntax(self, Py_ssize_t pos, str reason) except -2:
        self._err_pos = pos
        self._err_code = 400
        self._err_syntax = True
        self._err_reason = "invalid JSON: " + reason
        return -1

    cdef Py_ssize_t _field(self, Py_ssize_t pos, str reason, int code=400) except -2:
        self._err_pos = pos
        self._err_code = code
        self._err_syntax = False
        self._err_reason = reason
        return -1

    cdef inline int _peek(self, Py_ssize_t p) noexcept:
        return self._b[p] if p < self._e else -1

    cdef inline Py_ssize_t _skip(self, Py_ssize_t p) noexcept:
        cdef const unsigned char* b = self._b
        cdef Py_ssize_t e = self._e
        while p < e and (b[p] == 32 or b[p] == 10 or b[p] == 13 or b[p] == 9):
            p += 1
        return p

    cdef Py_ssize_t _string(self, Py_ssize_t p) except -2:
        # b[p] is '"'. Index after the closing quote; sets _esc when it has escapes.
        cdef const unsigned char* b = self._b
        cdef Py_ssize_t e = self._e
        cdef Py_ssize_t q = p + 1
        cdef unsigned char c
        cdef bint escaped = False
        while q < e:
            c = b[q]
            if _spl_plain[c]:
                q += 1
                continue
            if c == 34:
                self._esc = escaped
                return q + 1
            if c == 92:
                escaped = True
                q = self._escape_seq(q)
                if q < 0:
                    return -1
            elif c < 0x20:
                return self._syntax(q, f"unescaped control character (byte 0x{c:02x}) in a string")
            else:
                q = self._utf8(q)
                if q < 0:
                    return -1
        return self._syntax(q, "unterminated string")

    cdef Py_ssize_t _utf8(self, Py_ssize_t q) except -2:
        # One UTF-8 sequence at q (Unicode 15 table 3-7: no overlongs, no surrogates, at most
        # U+10FFFF); the error is at its first byte, where Python's strict decoder puts it too.
        cdef const unsigned char* b = self._b
        cdef unsigned char c = b[q]
        cdef unsigned char lo = 0x80, hi = 0xBF
        cdef int n, k
        if 0xC2 <= c <= 0xDF:
            n = 1
        elif 0xE0 <= c <= 0xEF:
            n = 2
            if c == 0xE0:
                lo = 0xA0
            elif c == 0xED:
                hi = 0x9F
        elif 0xF0 <= c <= 0xF4:
            n = 3
            if c == 0xF0:
                lo = 0x90
            elif c == 0xF4:
                hi = 0x8F
        else:
            return self._syntax(q, "invalid UTF-8 in a string")
        if q + n >= self._e or b[q + 1] < lo or b[q + 1] > hi:
            return self._syntax(q, "invalid UTF-8 in a string")
        for k in range(2, n + 1):
            if (b[q + k] & 0xC0) != 0x80:
                return self._syntax(q, "invalid UTF-8 in a string")
        return q + n + 1

    cdef int _hex4(self, Py_ssize_t r) noexcept:
        # Value of the 4 hex digits after the backslash-u at r, or -1.
        cdef const unsigned char* b = self._b
        cdef int a, c, d, f
        if r + 6 > self._e:
            return -1
        a = _spl_hex[b[r + 2]]
        c = _spl_hex[b[r + 3]]
        d = _spl_hex[b[r + 4]]
        f = _spl_hex[b[r + 5]]
        if (a | c | d | f) < 0:
            return -1
        return (a << 12) | (c << 8) | (d << 4) | f

    cdef Py_ssize_t _escape_seq(self, Py_ssize_t r) except -2:
        cdef const unsigned char* b = self._b
        cdef int c = self._peek(r + 1)
        cdef int cp
        if (c == 34 or c == 92 or c == 47 or c == 98 or c == 102 or c == 110 or c == 114
                or c == 116):
            return r + 2
        if c == 117:
            cp = self._hex4(r)
            if cp < 0:
                return self._syntax(r, "invalid \\u escape: expected 4 hex digits")
            if 0xD800 <= cp <= 0xDBFF:
                # RFC 8259 §7: a character outside the BMP is a high/low surrogate escape pair.
                if (r + 7 < self._e and b[r + 6] == 92 and b[r + 7] == 117
                        and 0xDC00 <= self._hex4(r + 6) <= 0xDFFF):
                    return r + 12
                cp = -1
            elif 0xDC00 <= cp <= 0xDFFF:
                cp = -1
            if cp < 0:
                return self._syntax(
                    r, f"unpaired surrogate escape {PyUnicode_DecodeUTF8(<char*>b + r, 6, NULL)}")
            return r + 6
        return self._syntax(r, f"invalid escape: '\\' followed by {_spl_desc(c)}")

    cdef Py_ssize_t _unescape(self, Py_ssize_t p, Py_ssize_t q) except -1:
        # UTF-8 value of the validated, escaped string b[p:q] (quotes included) into _scratch;
        # its length. It is never longer than the raw string.
        cdef const unsigned char* b = self._b
        cdef unsigned char* o = self._scratch_for(q - p)
        cdef Py_ssize_t i = p + 1, end = q - 1, n = 0
        cdef unsigned char c
        cdef int cp
        while i < end:
            c = b[i]
            if c != 92:
                o[n] = c
                n += 1
                i += 1
                continue
            c = b[i + 1]
            if c == 117:
                cp = self._hex4(i)
                i += 6
                if 0xD800 <= cp <= 0xDBFF:
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (self._hex4(i) - 0xDC00)
                    i += 6
                if cp < 0x80:
                    o[n] = <unsigned char>cp
                    n += 1
                elif cp < 0x800:
                    o[n] = <unsigned char>(0xC0 | (cp >> 6))
                    o[n + 1] = <unsigned char>(0x80 | (cp & 0x3F))
                    n += 2
                elif cp < 0x10000:
                    o[n] = <unsigned char>(0xE0 | (cp >> 12))
                    o[n + 1] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
                    o[n + 2] = <unsigned char>(0x80 | (cp & 0x3F))
                    n += 3
                else:
                    o[n] = <unsigned char>(0xF0 | (cp >> 18))
                    o[n + 1] = <unsigned char>(0x80 | ((cp >> 12) & 0x3F))
                    o[n + 2] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
                    o[n + 3] = <unsigned char>(0x80 | (cp & 0x3F))
                    n += 4
                continue
            if c == 98:
                c = 8
            elif c == 102:
                c = 12
            elif c == 110:
                c = 10
            elif c == 114:
                c = 13
            elif c == 116:
                c = 9
            o[n] = c  # '"', '\' and '/' stand for themselves
            n += 1
            i += 2
        return n

    cdef Py_ssize_t _string_value(self, Py_ssize_t p, Py_ssize_t q, bint escaped,
                                  const unsigned char** s) except -1:
        # The validated string b[p:q]: points s at its UTF-8 value and returns its length.
        cdef Py_ssize_t n
        if escaped:
            n = self._unescape(p, q)
            s[0] = self._scratch
            return n
        s[0] = self._b + p + 1
        return q - p - 2

    cdef Py_ssize_t _number(self, Py_ssize_t p) except -2:
        # b[p] is '-' or a digit. Index after the number; _is_int tells fraction/exponent apart.
        cdef const unsigned char* b = self._b
        cdef Py_ssize_t e = self._e
        cdef Py_ssize_t q = p + 1 if b[p] == 45 else p
        cdef int c = self._peek(q)
        if c == 48:
            q += 1
        elif 49 <= c <= 57:
            q += 1
            while q < e and 48 <= b[q] <= 57:
                q += 1
        else:
            return self._syntax(q, f"expected a digit after '-', found {_spl_desc(c)}")
        self._is_int = True
        if self._peek(q) == 46:
            c = self._peek(q + 1)
            if not 48 <= c <= 57:
                return self._syntax(q + 1, f"expected a digit after '.', found {_spl_desc(c)}")
            q += 2
            while q < e and 48 <= b[q] <= 57:
                q += 1
            self._is_int = False
        c = self._peek(q)
        if c == 101 or c == 69:
            q += 1
            c = self._peek(q)
            if c == 43 or c == 45:
                q += 1
                c = self._peek(q)
            if not 48 <= c <= 57:
                return self._syntax(q, f"expected a digit in the exponent, found {_spl_desc(c)}")
            q += 1
            while q < e and 48 <= b[q] <= 57:
                q += 1
            self._is_int = False
        return q

    cdef Py_ssize_t _literal(self, Py_ssize_t p, const char* word, Py_ssize_t n) except -2:
        cdef Py_ssize_t k
        cdef int c
        for k in range(1, n):
            c = self._peek(p + k)
            if c != <unsigned char>word[k]:
                return self._syntax(
                    p + k, f"expected '{word.decode('ascii')}', found {_spl_desc(c)}")
        return p + n

    cdef Py_ssize_t _value(self, Py_ssize_t p, int depth) except -2:
        # Validate the JSON value at p inside depth containers; index after it.
        cdef int c = self._peek(p)
        if c == 34:
            return self._string(p)
        if c == 123:
            return self._object(p, depth + 1)
        if c == 91:
            return self._array(p, depth + 1)
        if c == 45 or 48 <= c <= 57:
            return self._number(p)
        if c == 116:
            return self._literal(p, "true", 4)
        if c == 102:
            return self._literal(p, "false", 5)
        if c == 110:
            return self._literal(p, "null", 4)
        return self._syntax(p, f"expected a value, found {_spl_desc(c)}")

    cdef Py_ssize_t _name_end(self, Py_ssize_t p) except -2:
        if self._peek(p) != 34:
            return self._syntax(
                p, f"expected '\"' to start a field name, found {_spl_desc(self._peek(p))}")
        return self._string(p)

    cdef Py_ssize_t _colon(self, Py_ssize_t q) except -2:
        cdef int c
        q = self._skip(q)
        c = self._peek(q)
        if c != 58:
            return self._syntax(q, f"expected ':' after a field name, found {_spl_desc(c)}")
        return self._skip(q + 1)

    cdef Py_ssize_t _name(self, Py_ssize_t p) except -2:
        # A field name at p: sets _np/_nn to its UTF-8 bytes; index of its value.
        cdef Py_ssize_t q = self._name_end(p)
        if q < 0:
            return -1
        self._nn = self._string_value(p, q, self._esc, &self._np)
        return self._colon(q)

    cdef Py_ssize_t _after_field(self, Py_ssize_t p) except -2:
        # After an object field's value: next index; _more tells whether a field follows.
        cdef int c
        p = self._skip(p)
        c = self._peek(p)
        if c == 44:
            self._more = True
            return self._skip(p + 1)
        if c == 125:
            self._more = False
            return p + 1
        return self._syntax(p, f"expected ',' or '}}' after a field, found {_spl_desc(c)}")

    cdef Py_ssize_t _after_element(self, Py_ssize_t p) except -2:
        cdef int c
        p = self._skip(p)
        c = self._peek(p)
        if c == 44:
            self._more = True
            return self._skip(p + 1)
        if c == 93:
            self._more = False
            return p + 1
        return self._syntax(
            p, f"expected ',' or ']' after an array element, found {_spl_desc(c)}")

    cdef Py_ssize_t _object(self, Py_ssize_t p, int depth) except -2:
        if depth > _SPL_MAX_DEPTH:
            return self._syntax(p, f"nesting deeper than {_SPL_MAX_DEPTH} levels")
        p = self._skip(p + 1)
        if self._peek(p) == 125:
            return p + 1
        while True:
            p = self._name_end(p)
            if p < 0:
                return -1
            p = self._colon(p)
            if p < 0:
                return -1
            p = self._value(p, depth)
            if p < 0:
                return -1
            p = self._after_field(p)
            if p < 0 or not self._more:
                return p

    cdef Py_ssize_t _array(self, Py_ssize_t p, int depth) except -2:
        if depth > _SPL_MAX_DEPTH:
            return self._syntax(p, f"nesting deeper than {_SPL_MAX_DEPTH} levels")
        p = self._skip(p + 1)
        if self._peek(p) == 93:
            return p + 1
        while True:
            p = self._value(p, depth)
            if p < 0:
                return -1
            p = self._after_element(p)
            if p < 0 or not self._more:
                return p

    # ------------------------------------------------------------ record fields

    cdef Py_ssize_t _record(self) except -2:
        # The record object at 0; fills _r_*.
        cdef Py_ssize_t p, name_at
        cdef int field, seen = 0
        p = self._skip(1)
        if self._peek(p) == 125:
            return p + 1
        while True:
            name_at = p
            p = self._name(p)
            if p < 0:
                return -1
            field = 0
            if _spl_is(self._np, self._nn, "partition_id", 12):
                field = _SPL_F_PARTITION
            elif _spl_is(self._np, self._nn, "headers", 7):
                field = _SPL_F_HEADERS
            elif _spl_is(self._np, self._nn, "key", 3):
                field = _SPL_F_KEY
            elif _spl_is(self._np, self._nn, "value", 5):
                field = _SPL_F_VALUE
            elif _spl_is(self._np, self._nn, "timestamp", 9):
                field = _SPL_F_TIMESTAMP
            else:
                return self._field(name_at,
                                   f"unknown field '{_spl_text(self._np, self._nn)}'")
            if seen & (1 << field):
                return self._field(
                    name_at, f"duplicate field '{_SPL_RECORD_FIELD_NAMES[field]}'")
            seen |= 1 << field
            if field == _SPL_F_PARTITION:
                p = self._partition(p)
            elif field == _SPL_F_HEADERS:
                p = self._headers(p)
            elif field == _SPL_F_TIMESTAMP:
                p = self._timestamp(p)
            elif field == _SPL_F_KEY:
                p = self._side(p, "key")
                if p >= 0:
                    self._r_key = self._side_data
                    self._r_key_type = _SPL_TYPE_NAMES[self._side_type]
            else:
                p = self._side(p, "value")
                if p >= 0:
                    self._r_value = self._side_data
                    self._r_value_type = _SPL_TYPE_NAMES[self._side_type]
            if p < 0:
                return -1
            p = self._after_field(p)
            if p < 0 or not self._more:
                return p

    cdef Py_ssize_t _partition(self, Py_ssize_t p) except -2:
        cdef const unsigned char* b = self._b
        cdef int c = self._peek(p)
        cdef Py_ssize_t q, d, k
        cdef long long v = 0
        if c == 110:
            q = self._literal(p, "null", 4)
            self._r_partition = -1
            return q
        if c == 45 or 48 <= c <= 57:
            q = self._number(p)
            if q < 0:
                return -1
            if not self._is_int:
                return self._field(p, "partition_id must be an integer or null")
            d = p + 1 if c == 45 else p  # first digit
            # "-0" is partition 0; more than 10 digits is out of range whatever they are.
            if (c == 45 and not (q - d == 1 and b[d] == 48)) or q - d > 10:
                v = -1
            else:
                for k in range(d, q):
                    v = v * 10 + (b[k] - 48)
            if v < 0 or v > _SPL_INT32_MAX:
                return self._field(
                    p, f"partition_id {_spl_text(b + p, q - p)} does not exist", 40402)
            self._r_partition = v
            return q
        return self._field(p, "partition_id must be an integer or null")

    cdef Py_ssize_t _headers(self, Py_ssize_t p) except -2:
        cdef int c = self._peek(p)
        cdef Py_ssize_t q, i, header_at, name_at, end, n
        cdef int seen
        cdef const unsigned char* s
        cdef list headers
        if c == 110:
            self._r_headers = None
            return self._literal(p, "null", 4)
        if c != 91:
            return self._field(p, "headers must be an array or null")
        headers = []
        self._r_headers = headers
        q = self._skip(p + 1)
        if self._peek(q) == 93:
            return q + 1
        while True:
            i = len(headers)
            if self._peek(q) != 123:
                return self._field(q, f"headers[{i}] must be an object")
            header_at = q
            name = None
            value = None
            seen = 0
            q = self._skip(q + 1)
            if self._peek(q) == 125:
                q += 1
            else:
                while True:
                    name_at = q
                    q = self._name(q)
                    if q < 0:
                        return -1
                    if _spl_is(self._np, self._nn, "name", 4):
                        if seen & 1:
                            return self._field(name_at, f"duplicate field 'headers[{i}].name'")
                        seen |= 1
                        if self._peek(q) != 34:
                            return self._field(q, f"headers[{i}].name must be a string")
                        end = self._string(q)
                        if end < 0:
                            return -1
                        n = self._string_value(q, end, self._esc, &s)
                        name = PyUnicode_DecodeUTF8(<char*>s, n, NULL)
                        q = end
                    elif _spl_is(self._np, self._nn, "value", 5):
                        if seen & 2:
                            return self._field(name_at, f"duplicate field 'headers[{i}].value'")
                        seen |= 2
                        c = self._peek(q)
                        if c == 110:
                            q = self._literal(q, "null", 4)
                        elif c == 34:
                            end = self._string(q)
                            if end < 0:
                                return -1
                            n = self._string_value(q, end, self._esc, &s)
                            value = _spl_base64(s, n)
                            if value is None:
                                return self._field(q, f"headers[{i}].value is not valid base64")
                            q = end
                        else:
                            return self._field(
                                q, f"headers[{i}].value must be a base64 string or null")
                    else:
                        return self._field(
                            name_at,
                            f"unknown field 'headers[{i}].{_spl_text(self._np, self._nn)}'")
                    if q < 0:
                        return -1
                    q = self._after_field(q)
                    if q < 0:
                        return -1
                    if not self._more:
                        break
            if name is None:
                return self._field(header_at, f"headers[{i}].name is required")
            headers.append((name, value))
            q = self._after_element(q)
            if q < 0 or not self._more:
                return q

    cdef Py_ssize_t _side(self, Py_ssize_t p, str side) except -2:
        # The key or value field at p: sets _side_data and _side_type.
        cdef int c = self._peek(p)
        cdef Py_ssize_t q, object_at, name_at, end, data_at = 0, data_end = 0, n
        cdef int seen = 0, data_kind = _SPL_D_ABSENT, data_type = _SPL_T_NONE
        cdef bint data_escaped = False
        cdef const unsigned char* s
        self._side_data = None
        self._side_type = _SPL_T_NONE
        if c == 110:
            return self._literal(p, "null", 4)
        if c != 123:
            return self._field(p, f"{side} must be an object or null")
        object_at = p
        q = self._skip(p + 1)
        if self._peek(q) == 125:
            q += 1
        else:
            while True:
                name_at = q
                q = self._name(q)
                if q < 0:
                    return -1
                if _spl_is(self._np, self._nn, "type", 4):
                    if seen & 1:
                        return self._field(name_at, f"duplicate field '{side}.type'")
                    seen |= 1
                    if self._peek(q) != 34:
                        return self._field(q, f"{side}.type must be BINARY, JSON or STRING")
                    end = self._string(q)
                    if end < 0:
                        return -1
                    n = self._string_value(q, end, self._esc, &s)
                    if _spl_is(s, n, "BINARY", 6):
                        data_type = _SPL_T_BINARY
                    elif _spl_is(s, n, "JSON", 4):
                        data_type = _SPL_T_JSON
                    elif _spl_is(s, n, "STRING", 6):
                        data_type = _SPL_T_STRING
                    elif (_spl_is(s, n, "AVRO", 4) or _spl_is(s, n, "JSONSCHEMA", 10)
                            or _spl_is(s, n, "PROTOBUF", 8)):
                        return self._field(
                            q, f"{side}.type {_spl_text(s, n)} is not supported "
                               f"(no Schema Registry)")
                    else:
                        return self._field(q, f"{side}.type must be BINARY, JSON or STRING")
                    q = end
                elif _spl_is(self._np, self._nn, "data", 4):
                    if seen & 2:
                        return self._field(name_at, f"duplicate field '{side}.data'")
                    seen |= 2
                    data_at = q
                    c = self._peek(q)
                    if c == 34:
                        q = self._string(q)
                        data_escaped = self._esc
                        data_kind = _SPL_D_STRING
                    elif c == 110:
                        q = self._literal(q, "null", 4)
                        data_kind = _SPL_D_NULL
                    else:
                        q = self._value(q, 2)
                        data_kind = _SPL_D_OTHER
                    if q < 0:
                        return -1
                    data_end = q
                elif (_spl_is(self._np, self._nn, "subject", 7)
                        or _spl_is(self._np, self._nn, "subject_name_strategy", 21)
                        or _spl_is(self._np, self._nn, "schema_id", 9)
                        or _spl_is(self._np, self._nn, "schema_version", 14)
                        or _spl_is(self._np, self._nn, "schema", 6)):
                    return self._field(
                        name_at, f"{side}.{_spl_text(self._np, self._nn)}: schema fields are "
                                 f"not supported (no Schema Registry)")
                else:
                    return self._field(
                        name_at, f"unknown field '{side}.{_spl_text(self._np, self._nn)}'")
                q = self._after_field(q)
                if q < 0:
                    return -1
                if not self._more:
                    break
        if data_type == _SPL_T_NONE:
            return self._field(object_at, f"{side}.type is required")
        self._side_type = data_type
        if data_kind == _SPL_D_ABSENT or data_kind == _SPL_D_NULL:
            return q
        if data_type == _SPL_T_BINARY:
            if data_kind != _SPL_D_STRING:
                return self._field(data_at,
                                   f"{side}.data must be a base64 string for type BINARY")
            n = self._string_value(data_at, data_end, data_escaped, &s)
            self._side_data = _spl_base64(s, n)
            if self._side_data is None:
                return self._field(data_at, f"{side}.data is not valid base64")
        elif data_type == _SPL_T_STRING:
            if data_kind != _SPL_D_STRING:
                return self._field(data_at, f"{side}.data must be a string for type STRING")
            n = self._string_value(data_at, data_end, data_escaped, &s)
            self._side_data = PyBytes_FromStringAndSize(<char*>s, n)
        else:
            self._side_data = self._compact(data_at, data_end)
        return q

    cdef bytes _compact(self, Py_ssize_t p, Py_ssize_t q):
        # Compact JSON text of the validated value b[p:q] (see _spl_compact_into).
        cdef const unsigned char* b = self._b
        cdef unsigned char* o
        cdef Py_ssize_t i
        cdef unsigned char c
        for i in range(p, q):
            c = b[i]
            if c == 32 or c == 10 or c == 13 or c == 9:
                break
        else:
            return PyBytes_FromStringAndSize(<char*>b + p, q - p)
        o = self._scratch_for(q - p)
        return PyBytes_FromStringAndSize(<char*>o, _spl_compact_into(o, b + p, q - p))

    # ------------------------------------------------------------ JSON text (consume side)

    cdef bint _is_json_text(self, const unsigned char* b, Py_ssize_t n) except -1:
        # Whether b[0:n] is exactly one JSON value, whitespace around it allowed, by the grammar
        # of the records (RFC 8259, strict UTF-8, nesting up to _SPL_MAX_DEPTH): the consumer's
        # check of a record's key or value in its JSON formats (consumer.pxi).
        cdef Py_ssize_t q
        self._b = b
        self._e = n
        try:
            q = self._value(self._skip(0), 0)
            return q >= 0 and self._skip(q) == n
        finally:
            self._b = NULL
            self._e = 0
            self._err_reason = None

    cdef str _json_text_reason(self, const unsigned char* b, Py_ssize_t n):
        # Why b[0:n] is not one JSON value (after _is_json_text said so), for messages.
        cdef Py_ssize_t q
        self._b = b
        self._e = n
        try:
            if n == 0 or self._skip(0) == n:
                return "no JSON value (empty or only whitespace)"
            q = self._value(self._skip(0), 0)
            if q < 0:
                return f"{self._err_reason} at byte {self._err_pos}"
            q = self._skip(q)
            return f"more than one JSON value: {_spl_desc(b[q])} at byte {q}"
        finally:
            self._b = NULL
            self._e = 0
            self._err_reason = None

    cdef Py_ssize_t _timestamp(self, Py_ssize_t p) except -2:
        cdef int c = self._peek(p)
        cdef Py_ssize_t q, n
        cdef const unsigned char* s
        cdef long long ms
        if c == 110:
            self._r_timestamp = 0
            return self._literal(p, "null", 4)
        if c != 34:
            return self._field(p, _SPL_TIMESTAMP_REASON)
        q = self._string(p)
        if q < 0:
            return -1
        n = self._string_value(p, q, self._esc, &s)
        ms = _spl_timestamp(s, n)
        if ms < 0:
            return self._field(p, _SPL_TIMESTAMP_REASON)
        self._r_timestamp = ms
        return q
