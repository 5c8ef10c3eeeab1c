# v1/v2 produce bodies: strict base64 of str or bytes, and the common binary record shape decoded
# in C (gateway/produce/v1.py words every error in Python). Uses the codecs of codecs.pxi.

cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void* PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)


def base64_decode(data):
    # Strict standard base64 (RFC 4648 §4, padding required, nothing else) of a str or bytes:
    # the decoder of the record splitter, for the v1/v2 produce bodies. ValueError when not
    # valid, TypeError for other types. Docstring in gateway/_speedups.pyi.
    cdef const unsigned char* p
    cdef Py_ssize_t n
    cdef object out
    if type(data) is str:
        if not PyUnicode_IS_COMPACT_ASCII(data):
            raise ValueError("base64 text is ASCII")
        p = <const unsigned char*>PyUnicode_DATA(data)
        n = PyUnicode_GET_LENGTH(data)
    elif type(data) is bytes:
        p = <const unsigned char*>PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
    else:
        raise TypeError(f"base64 data must be str or bytes, not {type(data).__name__}")
    out = _spl_base64(p, n)
    if out is None:
        raise ValueError("not valid base64 (standard alphabet, padded)")
    return out


def v1_binary_items(list records not None, Py_ssize_t partitions, object url_partition):
    # The common v1/v2 binary records, in C: each a dict of "value" (base64 str or null) and
    # optionally "key" (base64 str or null) and "partition" (int or null). Returns the
    # StreamCore items (index, partition, key, value, None, 0, None, None), or None as soon as
    # a record is anything else: gateway/produce/v1.py's decode_records then decodes the body
    # (and words the error). Docstring in gateway/_speedups.pyi.
    cdef Py_ssize_t i, n = len(records), fields
    cdef long long default_partition = -1 if url_partition is None else url_partition
    cdef long long partition
    cdef list out = []
    cdef object rec, value, key, part
    cdef object missing = _SPL_MISSING
    for i in range(n):
        rec = records[i]
        if type(rec) is not dict:
            return None
        value = (<dict>rec).get("value", missing)
        if value is missing:
            return None
        fields = 1
        key = (<dict>rec).get("key", missing)
        if key is missing:
            key = None
        else:
            fields += 1
        part = (<dict>rec).get("partition", missing)
        if part is missing or part is None:
            partition = default_partition
            if part is not missing:
                fields += 1
        else:
            fields += 1
            if type(part) is not int:
                return None
            partition = part
            if url_partition is not None:
                if partition != default_partition:
                    return None
            elif not 0 <= partition < partitions:
                return None
        if len(<dict>rec) != fields:
            return None
        if value is not None:
            if type(value) is not str or not PyUnicode_IS_COMPACT_ASCII(value):
                return None
            value = _spl_base64(<const unsigned char*>PyUnicode_DATA(value),
                                PyUnicode_GET_LENGTH(value))
            if value is None:
                return None
        if key is not None:
            if type(key) is not str or not PyUnicode_IS_COMPACT_ASCII(key):
                return None
            key = _spl_base64(<const unsigned char*>PyUnicode_DATA(key), PyUnicode_GET_LENGTH(key))
            if key is None:
                return None
        out.append((i, partition, key, value, None, 0, None, None))
    return out


cdef object _SPL_MISSING = object()
