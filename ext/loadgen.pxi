# The load generator's compiled helpers (gateway.loadgen): its latency histogram and its record
# writer. Nothing of the gateway's server side uses them; they live in the one extension so
# that the loadgen needs no second compiled module (style: one extension, include files).

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from libc.math cimport ceil
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

cdef extern from *:
    """
    static inline int lg_msb(unsigned long long v) { return 63 - __builtin_clzll(v); }
    """
    int lg_msb(unsigned long long v) noexcept nogil

# HdrHistogram's layout with 128 sub-buckets per power of two: values below 256 are counted
# exactly, and above that a bucket is 2^e wide for values of [128 * 2^e, 256 * 2^e): relative
# width under 1/128 (0.8%). Values are clamped to _LH_MAX (2^41 - 1 µs, 25 days), so the
# histogram is a fixed 4480 counters (35 KiB) whatever it holds.
cdef enum:
    _LH_MAX_MSB = 40
    _LH_BUCKETS = ((_LH_MAX_MSB - 7) << 7) + 256

cdef int64_t _LH_MAX = (<int64_t>1 << (_LH_MAX_MSB + 1)) - 1


cdef inline int _lh_index(int64_t v) noexcept nogil:
    cdef int e
    if v < 256:
        return <int>v
    e = lg_msb(<unsigned long long>v) - 7
    return (e << 7) + <int>(v >> e)


cdef inline int64_t _lh_highest(int i) noexcept nogil:
    # The largest value counted in bucket i.
    cdef int e
    if i < 256:
        return i
    e = (i >> 7) - 1
    return ((<int64_t>(i - (e << 7))) << e) + ((<int64_t>1 << e) - 1)


cdef class LatencyHistogram:
    cdef uint64_t* _counts
    cdef uint64_t _total
    cdef int64_t _max
    cdef int64_t _min
    cdef double _sum

    def __cinit__(self):
        self._counts = <uint64_t*>calloc(_LH_BUCKETS, sizeof(uint64_t))
        if self._counts == NULL:
            raise MemoryError()
        self._total = 0
        self._max = -1
        self._min = -1
        self._sum = 0.0

    def __dealloc__(self):
        free(self._counts)

    cdef inline void _add(self, int64_t v, uint64_t n) noexcept:
        if v < 0:
            v = 0  # a report stamped before its intended time (clock steps): counts as 0
        elif v > _LH_MAX:
            v = _LH_MAX
        self._counts[_lh_index(v)] += n
        self._total += n
        self._sum += <double>v * <double>n
        if v > self._max:
            self._max = v
        if self._min < 0 or v < self._min:
            self._min = v

    def record(self, int64_t value, uint64_t count=1):
        if count:
            self._add(value, count)

    def record_span(self, double first, double step, Py_ssize_t n):
        # n values first, first + step, ..., first + (n-1) * step, each rounded down.
        cdef Py_ssize_t k
        if n <= 0:
            return
        if step == 0.0:
            self._add(<int64_t>first, <uint64_t>n)
            return
        for k in range(n):
            self._add(<int64_t>(first + step * <double>k), 1)

    def merge(self, LatencyHistogram other not None):
        cdef int i
        if other._total == 0:
            return
        for i in range(_LH_BUCKETS):
            self._counts[i] += other._counts[i]
        self._total += other._total
        self._sum += other._sum
        if other._max > self._max:
            self._max = other._max
        if self._min < 0 or (other._min >= 0 and other._min < self._min):
            self._min = other._min

    def reset(self):
        cdef int i
        for i in range(_LH_BUCKETS):
            self._counts[i] = 0
        self._total = 0
        self._max = -1
        self._min = -1
        self._sum = 0.0

    def value_at_percentile(self, double percentile):
        cdef uint64_t want, seen = 0
        cdef int i
        cdef int64_t v
        if self._total == 0:
            return None
        if percentile >= 100.0:
            return self._max
        if percentile < 0.0:
            percentile = 0.0
        want = <uint64_t>ceil(percentile / 100.0 * <double>self._total)
        if want < 1:
            want = 1
        for i in range(_LH_BUCKETS):
            seen += self._counts[i]
            if seen >= want:
                v = _lh_highest(i)
                return self._max if v > self._max else v
        return self._max

    @property
    def count(self):
        return self._total

    @property
    def max(self):
        return None if self._total == 0 else self._max

    @property
    def min(self):
        return None if self._total == 0 else self._min

    @property
    def mean(self):
        return None if self._total == 0 else self._sum / <double>self._total


cdef char* _LG_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


cdef Py_ssize_t _lg_b64(const unsigned char* src, Py_ssize_t n, char* dst) noexcept:
    cdef Py_ssize_t i = 0, o = 0
    cdef unsigned int w
    while i + 3 <= n:
        w = (src[i] << 16) | (src[i + 1] << 8) | src[i + 2]
        dst[o] = _LG_B64[(w >> 18) & 63]
        dst[o + 1] = _LG_B64[(w >> 12) & 63]
        dst[o + 2] = _LG_B64[(w >> 6) & 63]
        dst[o + 3] = _LG_B64[w & 63]
        i += 3
        o += 4
    if n - i == 1:
        w = src[i] << 16
        dst[o] = _LG_B64[(w >> 18) & 63]
        dst[o + 1] = _LG_B64[(w >> 12) & 63]
        dst[o + 2] = 61
        dst[o + 3] = 61
        o += 4
    elif n - i == 2:
        w = (src[i] << 16) | (src[i + 1] << 8)
        dst[o] = _LG_B64[(w >> 18) & 63]
        dst[o + 1] = _LG_B64[(w >> 12) & 63]
        dst[o + 2] = _LG_B64[(w >> 6) & 63]
        dst[o + 3] = 61
        o += 4
    return o


def loadgen_records(bytes template, Py_ssize_t key_at, bytes key_prefix, int width,
                    int64_t first, Py_ssize_t n, int64_t keys, int64_t mult, bint b64):
    # n copies of one fixed-length record, the i-th (from `first`) with the key text
    # key_prefix + the zero-padded decimal of (i * mult) % keys written at key_at (as its
    # base64 when b64). A memcpy and a few digits per record: no Python object per record.
    cdef Py_ssize_t rlen = PyBytes_GET_SIZE(template)
    cdef Py_ssize_t plen = PyBytes_GET_SIZE(key_prefix)
    cdef Py_ssize_t klen = plen + width
    cdef const char* src = PyBytes_AS_STRING(template)
    cdef char text[96]
    cdef bytes out
    cdef char* dst
    cdef Py_ssize_t r, d
    cdef int64_t num, mkey
    cdef uint64_t mk
    if n < 0 or width < 1 or klen > 60 or keys < 0 or keys > 2147483647:
        raise ValueError("bad record layout")
    if keys and key_at + (((klen + 2) // 3) * 4 if b64 else klen) > rlen:
        raise ValueError("the key does not fit in the template")
    out = PyBytes_FromStringAndSize(NULL, rlen * n)
    dst = PyBytes_AS_STRING(out)
    memcpy(text, PyBytes_AS_STRING(key_prefix), plen)
    mk = <uint64_t>mult % <uint64_t>keys if keys else 0
    num = <int64_t>((<uint64_t>first % <uint64_t>keys) * mk % <uint64_t>keys) if keys else 0
    for r in range(n):
        memcpy(dst, src, rlen)
        if keys:
            # num is (first + r) * mult mod keys, stepped by mk instead of multiplied.
            mkey = num
            for d in range(width):
                text[plen + width - 1 - d] = <char>(48 + mkey % 10)
                mkey //= 10
            if b64:
                _lg_b64(<const unsigned char*>text, klen, dst + key_at)
            else:
                memcpy(dst + key_at, text, klen)
            num += mk
            if num >= keys:
                num -= keys
        dst += rlen
    return out
