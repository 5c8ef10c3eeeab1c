# parse_head: the compiled twin of gateway/http/parser.py's ``python_parse_head`` (the reference).
# Docstring in gateway/_speedups.pyi; gateway.http.parser selects the twin the gateway uses.
#
# The compiled twin parses, over C bytes, the heads real clients send: complete, within the
# limits, every line ending in CRLF, no control byte, an origin-form target, HTTP/1.0 or 1.1,
# token field names, and framing fields in their plain form (one Content-Length of 1-18 digits,
# one "Transfer-Encoding: chunked", one "Connection: close|keep-alive", one
# "Expect: 100-continue"). Every other input (an incomplete head, bare LF line endings, any
# error, any rarer but valid form) is handed to the reference twin, so the answer is the
# reference's for everything outside that grammar: same head, same exception, same message.
# A head is only ever answered here when the reference would answer the very same head; the
# twins are compared on random and mutated heads by tests/fuzz/test_fuzz_http_parser.py.

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memcmp


cdef extern from "string.h" nogil:
    # GNU (Python.h defines _GNU_SOURCE); glibc's is vectorised.
    void* memmem(const void* haystack, size_t haystacklen, const void* needle, size_t needlelen)

cdef enum:
    # Longest field name looked at here; a longer (valid) one goes to the reference twin.
    _HP_MAX_NAME = 64
    # Byte classes (_hp_class).
    _HP_BAD = 0       # a control byte or DEL: never in a head parsed here
    _HP_VCHAR = 1     # HTAB, SP, other VCHAR, obs-text
    _HP_TCHAR = 2     # a token character (RFC 9110 §5.6.2); also VCHAR
    # Field names with a meaning to the framing (_hp_special).
    _HP_OTHER = 0
    _HP_HOST = 1
    _HP_CONTENT_LENGTH = 2
    _HP_TRANSFER_ENCODING = 3
    _HP_CONNECTION = 4
    _HP_EXPECT = 5
    _HP_CONTENT_TYPE = 6

cdef unsigned char _hp_class[256]
cdef unsigned char _hp_lower[256]


cdef void _hp_init_tables():
    cdef int c
    cdef bytes tchar = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for c in range(256):
        _hp_lower[c] = c + 32 if 65 <= c <= 90 else c
        if c == 9 or 32 <= c <= 126 or c >= 128:
            _hp_class[c] = _HP_VCHAR
        else:
            _hp_class[c] = _HP_BAD
    for c in tchar:
        _hp_class[c] = _HP_TCHAR


_hp_init_tables()

# The reference twin, imported on first use (gateway.http.parser imports this module to select
# its twin).
cdef object _hp_reference = None
cdef object _hp_default_limits = None


cdef inline bint _hp_same_name(object a, str b) except -1:
    # a == b for a field name: the same object, or the same length and text (no rich compare).
    if a is b:
        return True
    if type(a) is not str:
        return a == b
    if PyUnicode_GET_LENGTH(a) != PyUnicode_GET_LENGTH(b):
        return False
    return <str>a == b


cdef class RequestHead:
    # What either twin builds (gateway.http.parser re-exports it; docstring in
    # gateway/_speedups.pyi). A C type so that the compiled parser fills it without a Python
    # __init__ call, and ``joined`` (every request asks for a few fields) runs in C.
    cdef public object method
    cdef public object target
    cdef public object path
    cdef public object query
    cdef public object version
    cdef public list headers
    cdef public object content_length
    cdef public object chunked
    cdef public object keep_alive
    cdef public object expect_continue
    cdef public object content_type

    def __init__(self, method, target, path, query, version, list headers, content_length,
                 chunked, keep_alive, expect_continue, content_type):
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.content_type = content_type

    def header(self, str name not None):
        cdef tuple field
        for field in self.headers:
            if _hp_same_name(field[0], name):
                return field[1]
        return None

    def joined(self, str name not None):
        cdef tuple field
        cdef object found = None
        for field in self.headers:  # (no list: most heads have the field once or not at all)
            if _hp_same_name(field[0], name):
                found = field[1] if found is None else found + ", " + field[1]
        return found

    def __repr__(self):
        return (
            f"RequestHead({self.method} {self.target} HTTP/{self.version // 10}.{self.version % 10}"
            f", headers={len(self.headers)}, content_length={self.content_length}"
            f", chunked={self.chunked}, keep_alive={self.keep_alive}"
            f", expect_continue={self.expect_continue})"
        )


cdef RequestHead _hp_head(object method, object target, object path, object query, int version,
                          list headers, object content_length, bint chunked, bint keep_alive,
                          bint expect_continue, object content_type):
    cdef RequestHead h = RequestHead.__new__(RequestHead)
    h.method = method
    h.target = target
    h.path = path
    h.query = query
    h.version = version
    h.headers = headers
    h.content_length = content_length
    h.chunked = chunked
    h.keep_alive = keep_alive
    h.expect_continue = expect_continue
    h.content_type = content_type
    return h

# Lower-case names as the reference spells them, so common ones are not built per request.
cdef str _HP_S_HOST = "host"
cdef str _HP_S_CONTENT_LENGTH = "content-length"
cdef str _HP_S_TRANSFER_ENCODING = "transfer-encoding"
cdef str _HP_S_CONNECTION = "connection"
cdef str _HP_S_EXPECT = "expect"
cdef str _HP_S_CONTENT_TYPE = "content-type"
cdef str _HP_S_USER_AGENT = "user-agent"
cdef str _HP_S_ACCEPT = "accept"
cdef str _HP_S_ACCEPT_ENCODING = "accept-encoding"
cdef str _HP_S_AUTHORIZATION = "authorization"
cdef str _HP_S_GET = "GET"
cdef str _HP_S_POST = "POST"
cdef str _HP_S_EMPTY = ""


cdef void _hp_setup() except *:
    global _hp_reference, _hp_default_limits
    from gateway.http.parser import DEFAULT_LIMITS, python_parse_head
    _hp_default_limits = DEFAULT_LIMITS
    _hp_reference = python_parse_head


cdef inline bint _hp_is(const unsigned char* a, Py_ssize_t n, const char* lit, Py_ssize_t m) noexcept:
    """The n bytes at a are the (lower-case) literal, ignoring ASCII case."""
    cdef Py_ssize_t i
    if n != m:
        return False
    for i in range(n):
        if _hp_lower[a[i]] != <unsigned char>lit[i]:
            return False
    return True


cdef inline int _hp_special(const unsigned char* name, Py_ssize_t n) noexcept:
    if _hp_is(name, n, b"host", 4):
        return _HP_HOST
    if _hp_is(name, n, b"content-length", 14):
        return _HP_CONTENT_LENGTH
    if _hp_is(name, n, b"content-type", 12):
        return _HP_CONTENT_TYPE
    if _hp_is(name, n, b"connection", 10):
        return _HP_CONNECTION
    if _hp_is(name, n, b"transfer-encoding", 17):
        return _HP_TRANSFER_ENCODING
    if _hp_is(name, n, b"expect", 6):
        return _HP_EXPECT
    return _HP_OTHER


cdef str _hp_name(const unsigned char* name, Py_ssize_t n, int special):
    """The field name in lower case (an interned string for the common ones)."""
    cdef unsigned char low[_HP_MAX_NAME]
    cdef Py_ssize_t i
    if special == _HP_HOST:
        return _HP_S_HOST
    if special == _HP_CONTENT_LENGTH:
        return _HP_S_CONTENT_LENGTH
    if special == _HP_CONTENT_TYPE:
        return _HP_S_CONTENT_TYPE
    if special == _HP_CONNECTION:
        return _HP_S_CONNECTION
    if special == _HP_TRANSFER_ENCODING:
        return _HP_S_TRANSFER_ENCODING
    if special == _HP_EXPECT:
        return _HP_S_EXPECT
    if _hp_is(name, n, b"user-agent", 10):
        return _HP_S_USER_AGENT
    if _hp_is(name, n, b"accept", 6):
        return _HP_S_ACCEPT
    if _hp_is(name, n, b"accept-encoding", 15):
        return _HP_S_ACCEPT_ENCODING
    if _hp_is(name, n, b"authorization", 13):
        return _HP_S_AUTHORIZATION
    for i in range(n):
        low[i] = _hp_lower[name[i]]
    return PyUnicode_DecodeLatin1(<const char*>low, n, NULL)


cdef inline str _hp_text(const unsigned char* p, Py_ssize_t a, Py_ssize_t b):
    if a >= b:
        return _HP_S_EMPTY
    return PyUnicode_DecodeLatin1(<const char*>p + a, b - a, NULL)


cdef object _hp_parse(const unsigned char* p, Py_ssize_t start, Py_ssize_t end, object limits):
    """The head at p[start:end] as the reference answers it, or NotImplemented where the
    reference must be asked (an incomplete head, an error, a form not handled here)."""
    cdef Py_ssize_t s = start, lim, t, i, j, a, b, colon, e0, sp1, sp2, q, vs, ve
    cdef Py_ssize_t max_header_bytes, max_request_line, max_headers, nfields
    cdef Py_ssize_t skipped = 0
    cdef unsigned char c
    cdef const unsigned char* found
    cdef int special, version, hosts = 0, n_cl = 0, n_te = 0, n_conn = 0, n_expect = 0
    cdef long long content_length = 0
    cdef bint keep_alive, expect_continue = False, chunked = False, conn_keep = False
    cdef object cl_obj = None, content_type = None
    cdef str method, target, path, query, name, value
    cdef list headers

    # RFC 9112 §2.2: a few empty lines before the request line are skipped.
    c = p[s]
    while c == 13 or c == 10:
        if c == 10:
            s += 1
        elif s + 1 >= end:
            return None
        elif p[s + 1] != 10:
            return NotImplemented  # a bare CR: the reference says how it is refused
        else:
            s += 2
        skipped += 1
        if skipped > 4:  # parser.MAX_EMPTY_LINES
            return NotImplemented
        if s >= end:
            return None
        c = p[s]

    max_header_bytes = limits.max_header_bytes
    lim = end if max_header_bytes >= end - s else s + max_header_bytes
    # The end of the head: the first CR LF CR LF within the limit.
    found = <const unsigned char*>memmem(p + s, lim - s, b"\r\n\r\n", 4) if lim > s else NULL
    if found == NULL:
        return NotImplemented  # incomplete, bare LF endings or over a limit
    t = found - p

    # --- request line: METHOD SP target SP HTTP/1.x CR LF, every byte checked on the way
    sp1 = sp2 = -1
    i = s
    while True:
        c = p[i]
        if c == 13:
            break
        if _hp_class[c] == _HP_BAD:
            return NotImplemented
        if c == 32:
            if sp1 < 0:
                sp1 = i
            elif sp2 < 0:
                sp2 = i
            else:
                return NotImplemented
        i += 1
    e0 = i
    if p[e0 + 1] != 10 or sp2 < 0:
        return NotImplemented
    max_request_line = limits.max_request_line
    if e0 - s > max_request_line:
        return NotImplemented
    if sp1 == s:
        return NotImplemented
    for i in range(s, sp1):
        if _hp_class[p[i]] != _HP_TCHAR:
            return NotImplemented
    # The target: origin form, printable ASCII only.
    if sp2 == sp1 + 1 or p[sp1 + 1] != 47:  # '/'
        return NotImplemented
    q = -1
    for i in range(sp1 + 1, sp2):
        c = p[i]
        if c < 32 or c > 126:
            return NotImplemented
        if c == 63 and q < 0:  # '?'
            q = i
    if e0 - sp2 - 1 != 8 or memcmp(p + sp2 + 1, b"HTTP/1.", 7) != 0:
        return NotImplemented
    c = p[e0 - 1]
    if c == 49:
        version = 11
    elif c == 48:
        version = 10
    else:
        return NotImplemented

    if sp1 - s == 3 and memcmp(p + s, b"GET", 3) == 0:
        method = _HP_S_GET
    elif sp1 - s == 4 and memcmp(p + s, b"POST", 4) == 0:
        method = _HP_S_POST
    else:
        method = _hp_text(p, s, sp1)
    target = _hp_text(p, sp1 + 1, sp2)
    if q < 0:
        path = target
        query = _HP_S_EMPTY
    else:
        path = _hp_text(p, sp1 + 1, q)
        query = _hp_text(p, q + 1, sp2)

    # --- field lines: name ":" OWS value OWS CR LF
    max_headers = limits.max_headers
    headers = []
    nfields = 0
    a = e0 + 2
    while a < t + 2:
        nfields += 1
        if nfields > max_headers:
            return NotImplemented
        colon = -1
        i = a
        while True:
            c = p[i]
            if c == 13:
                break
            if colon < 0:
                if c == 58:  # ':'
                    colon = i
                elif _hp_class[c] != _HP_TCHAR:
                    return NotImplemented
            elif _hp_class[c] == _HP_BAD:
                return NotImplemented
            i += 1
        b = i
        if p[b + 1] != 10 or colon <= a or colon - a > _HP_MAX_NAME:
            return NotImplemented
        vs = colon + 1
        while vs < b and (p[vs] == 32 or p[vs] == 9):
            vs += 1
        ve = b
        while ve > vs and (p[ve - 1] == 32 or p[ve - 1] == 9):
            ve -= 1
        special = _hp_special(p + a, colon - a)
        name = _hp_name(p + a, colon - a, special)
        value = _hp_text(p, vs, ve)
        headers.append((name, value))
        if special != _HP_OTHER:
            if special == _HP_HOST:
                hosts += 1
            elif special == _HP_CONTENT_LENGTH:
                n_cl += 1
                if n_cl > 1 or ve - vs < 1 or ve - vs > 18:
                    return NotImplemented
                for j in range(vs, ve):
                    c = p[j]
                    if c < 48 or c > 57:
                        return NotImplemented
                    content_length = content_length * 10 + (c - 48)
            elif special == _HP_CONTENT_TYPE:
                if content_type is None:
                    content_type = value
            elif special == _HP_TRANSFER_ENCODING:
                n_te += 1
                if n_te > 1 or not _hp_is(p + vs, ve - vs, b"chunked", 7):
                    return NotImplemented
            elif special == _HP_CONNECTION:
                n_conn += 1
                if n_conn > 1:
                    return NotImplemented
                if _hp_is(p + vs, ve - vs, b"keep-alive", 10):
                    conn_keep = True
                elif not _hp_is(p + vs, ve - vs, b"close", 5):
                    return NotImplemented
            else:  # expect
                n_expect += 1
                if n_expect > 1 or not _hp_is(p + vs, ve - vs, b"100-continue", 12):
                    return NotImplemented
                expect_continue = version == 11
        a = b + 2

    if hosts != 1 and (version == 11 or hosts > 1):
        return NotImplemented
    if n_te:
        if version == 10 or n_cl:
            return NotImplemented
        chunked = True
    elif n_cl:
        cl_obj = content_length
    if n_conn:
        keep_alive = conn_keep
    else:
        keep_alive = version == 11
    return (
        _hp_head(
            method, target, path, query, version, headers, cl_obj, chunked, keep_alive,
            expect_continue, content_type,
        ),
        t + 4,
    )


def parse_head(object buf, Py_ssize_t start, Py_ssize_t end, object limits=None):
    cdef const unsigned char* p
    cdef Py_ssize_t size
    cdef object res
    if _hp_reference is None:
        _hp_setup()
    if limits is None:
        limits = _hp_default_limits
    if type(buf) is bytearray:
        p = <const unsigned char*>PyByteArray_AS_STRING(buf)
        size = PyByteArray_GET_SIZE(buf)
    elif type(buf) is bytes:
        p = <const unsigned char*>PyBytes_AS_STRING(buf)
        size = PyBytes_GET_SIZE(buf)
    else:
        return _hp_reference(buf, start, end, limits)
    if start < 0 or end > size:
        return _hp_reference(buf, start, end, limits)
    if start >= end:
        return None
    res = _hp_parse(p, start, end, limits)
    if res is NotImplemented:
        return _hp_reference(buf, start, end, limits)
    return res
