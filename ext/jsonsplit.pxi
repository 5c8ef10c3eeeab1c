# v3 produce records read by simdjson's On-Demand API: the C++ shim ext/jsonsplit.cc, compiled
# with simdjson itself into this extension (setup.py). JsonSplitter (splitter.pxi) hands it the
# records of at least _SPL_SIMD_MIN bytes once its scanner has found their end; whatever it does
# not accept, the splitter's own parser decides (and words the error). SimdjsonRecords reads a
# stream of chunks with simdjson alone, for bench/splitjson.py. Docstrings in
# gateway/_speedups.pyi.

from cpython.mem cimport PyMem_Free, PyMem_Malloc

cdef extern from "jsonsplit.h":
    ctypedef struct gw_js_span:
        const char* p
        size_t n
    ctypedef struct gw_js_record:
        long long partition
        int has_timestamp
        gw_js_span timestamp
        int has_headers
        int n_headers
        gw_js_span header_name[16]
        gw_js_span header_value[16]
        int header_has_value[16]
        int side_type[2]
        int side_kind[2]
        gw_js_span side_text[2]
        gw_js_span side_string[2]
    ctypedef struct gw_js_reader:
        pass
    enum:
        GW_JS_D_ABSENT
        GW_JS_D_NULL
        GW_JS_D_STRING
        GW_JS_D_OTHER
        GW_JS_T_NONE
        GW_JS_T_BINARY
        GW_JS_T_JSON
        GW_JS_T_STRING
    gw_js_reader* gw_js_reader_new() nogil
    void gw_js_reader_free(gw_js_reader* r) nogil
    void gw_js_reader_trim(gw_js_reader* r) nogil
    int gw_js_record_read(gw_js_reader* r, const char* buf, size_t n, gw_js_record* out) nogil
    int gw_js_stream_feed(gw_js_reader* r, const char* buf, size_t n, int carry) nogil
    int gw_js_stream_next(gw_js_reader* r, gw_js_record* out, size_t* start,
                          size_t* end) nogil

# A record refused by a check left to the Cython side (base64, timestamp, a data kind).
cdef object _JS_REFUSED = object()


cdef bytes _js_compact(gw_js_span t):
    # The compact JSON text of a validated value (see _spl_compact_into).
    cdef const unsigned char* b = <const unsigned char*>t.p
    cdef Py_ssize_t n = <Py_ssize_t>t.n, i, k
    cdef unsigned char c
    cdef unsigned char* o
    for i in range(n):
        c = b[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            break
    else:
        return PyBytes_FromStringAndSize(t.p, n)
    o = <unsigned char*>PyMem_Malloc(<size_t>n)
    if o == NULL:
        raise MemoryError()
    try:
        k = _spl_compact_into(o, b, n)
        return PyBytes_FromStringAndSize(<char*>o, k)
    finally:
        PyMem_Free(o)


cdef object _js_side(const gw_js_record* r, int k):
    cdef int t = r.side_type[k], kind = r.side_kind[k]
    cdef object data
    if t == GW_JS_T_NONE or kind == GW_JS_D_ABSENT or kind == GW_JS_D_NULL:
        return None
    if t == GW_JS_T_BINARY:
        if kind != GW_JS_D_STRING:
            return _JS_REFUSED
        data = _spl_base64(<const unsigned char*>r.side_string[k].p,
                           <Py_ssize_t>r.side_string[k].n)
        return _JS_REFUSED if data is None else data
    if t == GW_JS_T_STRING:
        if kind != GW_JS_D_STRING:
            return _JS_REFUSED
        return PyBytes_FromStringAndSize(r.side_string[k].p, <Py_ssize_t>r.side_string[k].n)
    return _js_compact(r.side_text[k])


cdef object _js_item(const gw_js_record* r, Py_ssize_t index):
    # The splitter's item of an accepted record, or _JS_REFUSED.
    cdef long long ts = 0
    cdef list headers = None
    cdef int i
    cdef object v
    if r.has_timestamp:
        ts = _spl_timestamp(<const unsigned char*>r.timestamp.p, <Py_ssize_t>r.timestamp.n)
        if ts < 0:
            return _JS_REFUSED
    if r.has_headers:
        headers = []
        for i in range(r.n_headers):
            if r.header_has_value[i]:
                v = _spl_base64(<const unsigned char*>r.header_value[i].p,
                                <Py_ssize_t>r.header_value[i].n)
                if v is None:
                    return _JS_REFUSED
            else:
                v = None
            headers.append((PyUnicode_DecodeUTF8(r.header_name[i].p,
                                                 <Py_ssize_t>r.header_name[i].n, NULL), v))
    key = _js_side(r, 0)
    if key is _JS_REFUSED:
        return key
    value = _js_side(r, 1)
    if value is _JS_REFUSED:
        return value
    return (index, r.partition, key, value, headers, ts, _SPL_TYPE_NAMES[r.side_type[0]],
            _SPL_TYPE_NAMES[r.side_type[1]])


# The one reader of JsonSplitter's fast path: the event loop's thread decodes one record at a
# time, so one parser serves every stream (and its memory is not per connection).
cdef gw_js_reader* _js_shared = NULL


cdef gw_js_reader* _js_reader() except NULL:
    global _js_shared
    if _js_shared == NULL:
        _js_shared = gw_js_reader_new()
        if _js_shared == NULL:
            raise MemoryError()
    return _js_shared


cdef object _js_read_record(const unsigned char* b, Py_ssize_t n, Py_ssize_t index):
    # The item of the record b[0:n] read by simdjson, or _JS_REFUSED.
    cdef gw_js_record rec
    cdef int rc = gw_js_record_read(_js_reader(), <const char*>b, <size_t>n, &rec)
    if rc < 0:
        raise MemoryError()
    try:
        return _js_item(&rec, index) if rc == 1 else _JS_REFUSED
    finally:
        gw_js_reader_trim(_js_shared)


@cython.final
cdef class SimdjsonRecords:
    # simdjson alone over a stream of chunks (the benchmark's counterpart of JsonSplitter).
    cdef gw_js_reader* _r
    cdef readonly Py_ssize_t records

    def __cinit__(self):
        self._r = gw_js_reader_new()
        if self._r == NULL:
            raise MemoryError()
        self.records = 0

    def __dealloc__(self):
        gw_js_reader_free(self._r)

    def feed(self, data):
        cdef Py_buffer view
        cdef list out = []
        cdef gw_js_record rec
        cdef int rc
        cdef size_t start, end
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            rc = gw_js_stream_feed(self._r, <const char*>view.buf, <size_t>view.len, 1)
        finally:
            PyBuffer_Release(&view)
        if rc == -1:
            raise MemoryError()
        if rc == -2:
            raise ValueError(f"record {self.records}: not a record simdjson accepts")
        while True:
            rc = gw_js_stream_next(self._r, &rec, &start, &end)
            if rc == 0:
                return out
            if rc < 0:
                raise ValueError(f"record {self.records}: not a record simdjson accepts")
            item = _js_item(&rec, self.records)
            if item is _JS_REFUSED:
                raise ValueError(f"record {self.records}: not a record simdjson accepts")
            out.append(item)
            self.records += 1
