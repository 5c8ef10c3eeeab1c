# The access log's pending text (gateway/log.py, AccessLogHandler): each line is formatted here,
# timestamp included, straight into one growing buffer, and the writer thread takes the buffer
# whole. Every method runs with the GIL held and runs no Python code while it touches the
# buffer, so the event loop (which adds) and the writer thread (which takes) need no lock.
# Docstrings in gateway/_speedups.pyi.

from libc.stdio cimport snprintf
from libc.math cimport floor
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct tm:
        pass
    tm* localtime_r(const time_t* timer, tm* result)
    size_t strftime(char* s, size_t maxsize, const char* fmt, const tm* t)

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL


cdef inline bint _al_printable_ascii(str s):
    # True when s is ASCII and every character is printable (0x20..0x7e): the common target.
    cdef const unsigned char* p
    cdef Py_ssize_t i, n
    if not PyUnicode_IS_COMPACT_ASCII(s):
        return False
    p = <const unsigned char*>PyUnicode_DATA(s)
    n = PyUnicode_GET_LENGTH(s)
    for i in range(n):
        if p[i] < 0x20 or p[i] > 0x7e:
            return False
    return True


cdef Py_ssize_t _al_int(char* out, long long v):
    # v in decimal (no printf: this runs for every request).
    cdef char tmp[24]
    cdef Py_ssize_t n = 0, i
    cdef unsigned long long u
    cdef bint neg = v < 0
    u = <unsigned long long>(-(v + 1)) + 1 if neg else <unsigned long long>v
    while True:
        tmp[n] = <char>(48 + u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    i = 0
    if neg:
        out[0] = 45  # '-'
        i = 1
    while n > 0:
        n -= 1
        out[i] = tmp[n]
        i += 1
    return i


cdef Py_ssize_t _al_tenths(char* out, double v):
    # v with one decimal, as Python's '%.1f' writes it. Written by hand when v is an ordinary
    # positive number whose hundredths are clearly away from a rounding tie; otherwise (a tie,
    # where the exact binary value decides, a huge or odd value) by snprintf, which rounds
    # from the exact binary value as Python does.
    cdef double scaled, whole, frac
    cdef long long t
    cdef Py_ssize_t n
    if v >= 0.0 and v < 1e12:
        scaled = v * 10.0
        whole = floor(scaled)
        frac = scaled - whole
        if frac < 0.4999 or frac > 0.5001:
            t = <long long>whole + (1 if frac > 0.5 else 0)
            n = _al_int(out, t // 10)
            out[n] = 46  # '.'
            out[n + 1] = <char>(48 + t % 10)
            return n + 2
    n = snprintf(out, 64, b"%.1f", v)
    return n if 0 < n < 64 else 0


cdef bytes _al_utf8(str s):
    # s in UTF-8; a lone surrogate (a header decoded with surrogateescape) as \udcXX text.
    return s.encode("utf-8", "backslashreplace")


cdef class AccessLines:
    cdef char* _buf
    cdef Py_ssize_t _len
    cdef Py_ssize_t _cap
    cdef readonly Py_ssize_t max_bytes
    cdef readonly Py_ssize_t wake_bytes
    cdef bint _woken
    cdef public Py_ssize_t dropped
    cdef bytes _prefix
    cdef time_t _sec
    cdef char _stamp[32]
    cdef Py_ssize_t _stamp_len

    def __cinit__(self, Py_ssize_t max_bytes, Py_ssize_t wake_bytes):
        self._buf = NULL
        self._len = 0
        self._cap = 0
        self.max_bytes = max_bytes
        self.wake_bytes = wake_bytes
        self._woken = False
        self.dropped = 0
        self._prefix = b" "
        self._sec = -1
        self._stamp_len = 0

    def __dealloc__(self):
        free(self._buf)

    @property
    def prefix(self):
        return self._prefix.decode("utf-8")

    @prefix.setter
    def prefix(self, str value not None):
        self._prefix = _al_utf8(value)

    @property
    def pending_bytes(self):
        return self._len

    def take(self):
        cdef bytes out = PyBytes_FromStringAndSize(self._buf, self._len)
        self._len = 0
        self._woken = False
        if self._cap > 4 * self.wake_bytes:  # a burst grew it: give the memory back
            free(self._buf)
            self._buf = NULL
            self._cap = 0
        return out

    cdef bint _room(self, Py_ssize_t n) except -1:
        # Room for n more bytes, or False (the line is dropped and counted) past max_bytes.
        cdef Py_ssize_t cap
        cdef char* grown
        if self._len + n > self.max_bytes:
            self.dropped += 1
            return False
        if self._len + n > self._cap:
            cap = max(self._cap * 2, self._len + n, 4096)
            grown = <char*>realloc(self._buf, cap)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._cap = cap
        return True

    cdef inline void _put(self, const char* p, Py_ssize_t n):
        memcpy(self._buf + self._len, p, n)
        self._len += n

    cdef bint _wake(self):
        if self._woken or self._len < self.wake_bytes:
            return False
        self._woken = True
        return True

    cdef Py_ssize_t _stamp_now(self, char* out):
        # "YYYY-MM-DD HH:MM:SS,mmm" of now, local time (logging's default asctime); the date
        # part is made once per second.
        cdef timespec ts
        cdef tm t
        cdef int ms
        clock_gettime(CLOCK_REALTIME, &ts)
        if ts.tv_sec != self._sec:
            localtime_r(&ts.tv_sec, &t)
            self._stamp_len = strftime(self._stamp, sizeof(self._stamp), b"%Y-%m-%d %H:%M:%S", &t)
            self._sec = ts.tv_sec
        memcpy(out, self._stamp, self._stamp_len)
        ms = <int>(ts.tv_nsec // 1000000)
        out += self._stamp_len
        out[0] = 44  # ','
        out[1] = <char>(48 + ms // 100)
        out[2] = <char>(48 + ms // 10 % 10)
        out[3] = <char>(48 + ms % 10)
        return self._stamp_len + 4

    def add_text(self, str text not None):
        # A line formatted elsewhere (the logging path), newline included.
        cdef bytes b = _al_utf8(text)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
        if not self._room(n):
            return False
        self._put(PyBytes_AS_STRING(b), n)
        return self._wake()

    def add_request(self, str peer not None, object method, object target, long status,
                    long long bytes_in, long long bytes_out, double ms, str detail not None):
        # One request's line: PEER "METHOD TARGET" STATUS in=N out=N ms=F[DETAIL] (method None:
        # a head that could not be parsed, "-"). A target with a control character is
        # written as repr() escapes it, never raw.
        cdef char stamp[48]
        cdef char nums[128]
        cdef Py_ssize_t sn, nn, pn, mn, tn, dn, peer_n, n
        cdef const char* peer_p
        cdef const char* method_p = b"-"
        cdef const char* target_p = NULL
        cdef const char* detail_p
        cdef bytes peer_b = None, target_b = None, detail_b = None, method_b = None
        cdef str escaped
        if _al_printable_ascii(peer):
            peer_p = PyUnicode_AsUTF8AndSize(peer, &peer_n)
        else:
            peer_b = _al_utf8(peer)
            peer_p = PyBytes_AS_STRING(peer_b)
            peer_n = PyBytes_GET_SIZE(peer_b)
        mn = 1
        tn = 0
        if method is not None:
            method_b = _al_utf8(<str>method)
            method_p = PyBytes_AS_STRING(method_b)
            mn = PyBytes_GET_SIZE(method_b)
            if _al_printable_ascii(<str>target):
                target_p = PyUnicode_AsUTF8AndSize(target, &tn)
            else:
                if not (<str>target).isprintable():
                    escaped = repr(target)
                    target = escaped[1:len(escaped) - 1]
                target_b = _al_utf8(<str>target)
                target_p = PyBytes_AS_STRING(target_b)
                tn = PyBytes_GET_SIZE(target_b)
        if PyUnicode_IS_COMPACT_ASCII(detail):
            detail_p = PyUnicode_AsUTF8AndSize(detail, &dn)
        else:
            detail_b = _al_utf8(detail)
            detail_p = PyBytes_AS_STRING(detail_b)
            dn = PyBytes_GET_SIZE(detail_b)
        memcpy(nums, b"\" ", 2)
        nn = 2 + _al_int(nums + 2, status)
        memcpy(nums + nn, b" in=", 4)
        nn += 4
        nn += _al_int(nums + nn, bytes_in)
        memcpy(nums + nn, b" out=", 5)
        nn += 5
        nn += _al_int(nums + nn, bytes_out)
        memcpy(nums + nn, b" ms=", 4)
        nn += 4
        nn += _al_tenths(nums + nn, ms)
        sn = self._stamp_now(stamp)
        pn = PyBytes_GET_SIZE(self._prefix)
        n = sn + pn + peer_n + 2 + mn + (tn + 1 if target_p != NULL else 0) + nn + dn + 1
        if not self._room(n):
            return False
        self._put(stamp, sn)
        self._put(PyBytes_AS_STRING(self._prefix), pn)
        self._put(peer_p, peer_n)
        self._put(b" \"", 2)
        self._put(method_p, mn)
        if target_p != NULL:
            self._put(b" ", 1)
            self._put(target_p, tn)
        self._put(nums, nn)
        self._put(detail_p, dn)
        self._put(b"\n", 1)
        return self._wake()
