# Whole JSON documents parsed by simdjson's On-Demand API: the C++ shim ext/jsondoc.cc, compiled
# with simdjson itself into this extension (setup.py). Docstrings in gateway/_speedups.pyi.

cdef extern from "jsondoc.h":
    const char* gw_simdjson_implementation()
    # NULL (an exception set) when the document is not JSON: Cython raises it.
    object gw_json_loads(const char* buf, size_t n, object error_type)
    object gw_json_batch(const char* buf, size_t n, object error_type)


class JsonDecodeError(ValueError):
    # A document json_loads refuses: the reason and the byte offset where reading stopped.
    def __init__(self, msg, pos):
        ValueError.__init__(self, f"{msg} at byte {pos}")
        self.msg = msg
        self.pos = pos

    def __reduce__(self):
        return JsonDecodeError, (self.msg, self.pos)


def simdjson_implementation():
    return gw_simdjson_implementation().decode()


def json_loads(data):
    # bytes, bytearray or any C-contiguous buffer: one memcpy into simdjson's padded buffer
    # (ext/jsondoc.cc), then a single On-Demand pass that builds the objects.
    cdef const unsigned char[::1] view
    if type(data) is bytes:
        return gw_json_loads(PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data),
                             JsonDecodeError)
    if isinstance(data, str):
        raise TypeError("json_loads takes bytes (UTF-8), not str")
    view = data
    if view.shape[0] == 0:
        return gw_json_loads(b"", 0, JsonDecodeError)
    return gw_json_loads(<const char*>&view[0], <size_t>view.shape[0], JsonDecodeError)


def json_batch_entries(bytes data):
    # The batch walk (ext/jsondoc.h, gw_json_batch): offsets into data, no record objects.
    return gw_json_batch(PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data),
                         JsonDecodeError)
