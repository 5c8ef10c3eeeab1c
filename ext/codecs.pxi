# Byte tables, strict base64 and ISO-8601 timestamps: the text codecs shared by the record
# splitter (splitter.pxi), the v1/v2 body decoder (v1decode.pxi) and, for the encoders at the
# end, the consumer (consumer.pxi). The pure-Python reference twins of the decoders are in
# gateway/produce/splitter.py.

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

# Byte classes, filled once at import.
# _spl_plain: inside a string, 1 for a byte that needs no attention (printable ASCII but '"', '\').
cdef unsigned char _spl_plain[256]
# _spl_scan: for the record-end scanner, 1 for '"', '\', '{', '}', '[', ']'.
cdef unsigned char _spl_scan[256]
cdef signed char _spl_hex[256]
cdef signed char _spl_b64[256]


cdef void _spl_init_tables() noexcept:
    cdef int c
    for c in range(256):
        _spl_plain[c] = 1 if (0x20 <= c < 0x80 and c != 34 and c != 92) else 0
        _spl_scan[c] = 1 if (c == 34 or c == 92 or c == 123 or c == 125 or c == 91
                             or c == 93) else 0
        _spl_hex[c] = -1
        _spl_b64[c] = -1
    for c in range(10):
        _spl_hex[48 + c] = c
        _spl_b64[48 + c] = 52 + c
    for c in range(6):
        _spl_hex[65 + c] = 10 + c
        _spl_hex[97 + c] = 10 + c
    for c in range(26):
        _spl_b64[65 + c] = c
        _spl_b64[97 + c] = 26 + c
    _spl_b64[43] = 62
    _spl_b64[47] = 63


_spl_init_tables()


cdef object _spl_base64(const unsigned char* s, Py_ssize_t n):
    # RFC 4648 §4 standard alphabet, padding required; the bits after the last character are
    # not checked (like Python's binascii and Java's Base64). None when not valid.
    cdef Py_ssize_t pad = 0, full, k
    cdef int a, b, c, d
    cdef unsigned char* out
    if n % 4 != 0:
        return None
    if n > 0 and s[n - 1] == 61:
        pad = 2 if s[n - 2] == 61 else 1
    full = n // 4 - (1 if pad else 0)  # quads without padding
    result = PyBytes_FromStringAndSize(NULL, n // 4 * 3 - pad)
    out = <unsigned char*>PyBytes_AS_STRING(result)
    for k in range(full):
        a = _spl_b64[s[0]]
        b = _spl_b64[s[1]]
        c = _spl_b64[s[2]]
        d = _spl_b64[s[3]]
        if (a | b | c | d) < 0:
            return None
        out[0] = <unsigned char>((a << 2) | (b >> 4))
        out[1] = <unsigned char>(((b & 15) << 4) | (c >> 2))
        out[2] = <unsigned char>(((c & 3) << 6) | d)
        s += 4
        out += 3
    if pad:
        a = _spl_b64[s[0]]
        b = _spl_b64[s[1]]
        c = 0 if pad == 2 else _spl_b64[s[2]]
        if (a | b | c) < 0:
            return None
        out[0] = <unsigned char>((a << 2) | (b >> 4))
        if pad == 1:
            out[1] = <unsigned char>(((b & 15) << 4) | (c >> 2))
    return result


@cython.cdivision(False)
cdef long long _spl_days_from_civil(long long y, long long m, long long d) noexcept:
    # Days from 1970-01-01, counted from 0000-03-01 with years starting in March: the leap day is
    # then the last day of a year and the month lengths Mar..Jan repeat 31,30,31,30,31, so the
    # days before month m (0 = March) are (153*m + 2) // 5. Python division semantics (floor) so
    # the twin agrees for every year.
    if m <= 2:
        y -= 1
        m += 9
    else:
        m -= 3
    return 365 * y + y // 4 - y // 100 + y // 400 + (153 * m + 2) // 5 + d - 1 - 719468


cdef inline int _spl_2digits(const unsigned char* s) noexcept:
    if not (48 <= s[0] <= 57 and 48 <= s[1] <= 57):
        return -1
    return (s[0] - 48) * 10 + (s[1] - 48)


cdef long long _spl_timestamp(const unsigned char* s, Py_ssize_t n) noexcept:
    # YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM) to ms since the epoch; -1 when not valid.
    cdef int year, month, day, hour, minute, second, off_hour, off_minute, k, dim
    cdef long long millis = 0, shift = 0, ms
    cdef Py_ssize_t p
    if n < 20:
        return -1
    if s[4] != 45 or s[7] != 45 or s[10] != 84 or s[13] != 58 or s[16] != 58:
        return -1
    year = _spl_2digits(s)
    k = _spl_2digits(s + 2)
    if year < 0 or k < 0:
        return -1
    year = year * 100 + k
    month = _spl_2digits(s + 5)
    day = _spl_2digits(s + 8)
    hour = _spl_2digits(s + 11)
    minute = _spl_2digits(s + 14)
    second = _spl_2digits(s + 17)
    if month < 0 or day < 0 or hour < 0 or minute < 0 or second < 0:
        return -1
    p = 19
    if s[p] == 46:
        p += 1
        k = 0
        while p < n and 48 <= s[p] <= 57:
            if k < 3:
                millis = millis * 10 + (s[p] - 48)
            k += 1
            p += 1
        if k == 0 or k > 9:
            return -1
        while k < 3:
            millis *= 10
            k += 1
    if p >= n:
        return -1
    if s[p] == 90:
        p += 1
    elif s[p] == 43 or s[p] == 45:
        if p + 6 != n or s[p + 3] != 58:
            return -1
        off_hour = _spl_2digits(s + p + 1)
        off_minute = _spl_2digits(s + p + 4)
        if off_hour < 0 or off_minute < 0 or off_hour > 23 or off_minute > 59:
            return -1
        shift = (off_hour * 60 + off_minute) * 60000
        if s[p] == 45:
            shift = -shift
        p += 6
    else:
        return -1
    if p != n:
        return -1
    if month < 1 or month > 12 or hour > 23 or minute > 59 or second > 59:
        return -1
    if month == 2:
        dim = 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28
    elif month == 4 or month == 6 or month == 9 or month == 11:
        dim = 30
    else:
        dim = 31
    if day < 1 or day > dim:
        return -1
    ms = (_spl_days_from_civil(year, month, day) * 86400000
          + ((hour * 60 + minute) * 60 + second) * 1000 + millis - shift)
    return ms if ms >= 0 else -1


# Encoders for the consume side (ext/consumer.pxi): standard base64 with padding, and the inside
# of a JSON string for bytes that should be UTF-8 (topic and header names).

cdef const char* _B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
cdef const char* _HEX_DIGITS = b"0123456789abcdef"
# Two base64 characters for every 12-bit group: one lookup writes two output bytes.
cdef unsigned short _b64_pairs[4096]


cdef void _b64_init_pairs() noexcept:
    cdef int v
    cdef unsigned char* p
    for v in range(4096):
        p = <unsigned char*>&_b64_pairs[v]
        p[0] = <unsigned char>_B64_ALPHABET[v >> 6]
        p[1] = <unsigned char>_B64_ALPHABET[v & 63]


_b64_init_pairs()


cdef inline Py_ssize_t _b64_len(Py_ssize_t n) noexcept nogil:
    return (n + 2) // 3 * 4


cdef Py_ssize_t _b64_encode(char* o, const unsigned char* s, Py_ssize_t n) noexcept nogil:
    # RFC 4648 §4 of s[0:n] at o (exactly _b64_len(n) bytes, padded); returns that length.
    cdef Py_ssize_t i = 0, k = 0
    cdef unsigned int v
    while i + 3 <= n:
        v = (<unsigned int>s[i] << 16) | (<unsigned int>s[i + 1] << 8) | s[i + 2]
        memcpy(o + k, &_b64_pairs[v >> 12], 2)
        memcpy(o + k + 2, &_b64_pairs[v & 4095], 2)
        i += 3
        k += 4
    if n - i == 1:
        v = <unsigned int>s[i] << 16
        o[k] = _B64_ALPHABET[v >> 18]
        o[k + 1] = _B64_ALPHABET[(v >> 12) & 63]
        o[k + 2] = 61
        o[k + 3] = 61
        k += 4
    elif n - i == 2:
        v = (<unsigned int>s[i] << 16) | (<unsigned int>s[i + 1] << 8)
        o[k] = _B64_ALPHABET[v >> 18]
        o[k + 1] = _B64_ALPHABET[(v >> 12) & 63]
        o[k + 2] = _B64_ALPHABET[(v >> 6) & 63]
        o[k + 3] = 61
        k += 4
    return k


cdef inline Py_ssize_t _utf8_seq(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    # Length of the well-formed UTF-8 sequence (Unicode 15 table 3-7) starting with a byte
    # >= 0x80 at s, within n bytes; 0 when there is none. The splitter's _utf8 checks the same.
    cdef unsigned char c = s[0]
    cdef unsigned char lo = 0x80, hi = 0xBF
    cdef Py_ssize_t m, k
    if 0xC2 <= c <= 0xDF:
        m = 2
    elif 0xE0 <= c <= 0xEF:
        m = 3
        if c == 0xE0:
            lo = 0xA0
        elif c == 0xED:
            hi = 0x9F
    elif 0xF0 <= c <= 0xF4:
        m = 4
        if c == 0xF0:
            lo = 0x90
        elif c == 0xF4:
            hi = 0x8F
    else:
        return 0
    if m > n or s[1] < lo or s[1] > hi:
        return 0
    for k in range(2, m):
        if (s[k] & 0xC0) != 0x80:
            return 0
    return m


cdef Py_ssize_t _json_escape(char* o, const unsigned char* s, Py_ssize_t n) noexcept nogil:
    # s[0:n] as the inside of a JSON string (no quotes) at o: '"' and '\' escaped, control
    # characters as \n, \r, \t, \b, \f or \u00XX, valid UTF-8 kept, and each byte of invalid
    # UTF-8 as \ufffd. At most 6 * n bytes; returns the length written.
    cdef Py_ssize_t i = 0, k = 0, m
    cdef unsigned char c
    while i < n:
        c = s[i]
        if _spl_plain[c]:
            o[k] = <char>c
            k += 1
            i += 1
            continue
        if c == 34 or c == 92:
            o[k] = 92
            o[k + 1] = <char>c
            k += 2
            i += 1
            continue
        if c < 0x20:
            o[k] = 92
            if c == 10:
                o[k + 1] = 110
            elif c == 13:
                o[k + 1] = 114
            elif c == 9:
                o[k + 1] = 116
            elif c == 8:
                o[k + 1] = 98
            elif c == 12:
                o[k + 1] = 102
            else:
                memcpy(o + k + 1, b"u00", 3)
                o[k + 4] = _HEX_DIGITS[c >> 4]
                o[k + 5] = _HEX_DIGITS[c & 15]
                k += 6
                i += 1
                continue
            k += 2
            i += 1
            continue
        m = _utf8_seq(s + i, n - i)
        if m:
            memcpy(o + k, s + i, <size_t>m)
            k += m
            i += m
        else:
            memcpy(o + k, b"\\ufffd", 6)
            k += 6
            i += 1
    return k

