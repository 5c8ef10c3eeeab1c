/* Whole JSON documents parsed by simdjson's On-Demand API (ext/jsondoc.cc), for the Cython
 * module (ext/jsondoc.pxi): plain C declarations, so _speedups.c stays C. */
#ifndef GATEWAY_JSONDOC_H
#define GATEWAY_JSONDOC_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The name of the kernel simdjson chose for this CPU at run time ("haswell", "westmere",
 * "fallback", ...). */
const char *gw_simdjson_implementation(void);

/* The Python objects json.loads makes of the JSON text buf[0:len] (UTF-8). On a document
 * that is not JSON, raises error_type(message, byte_offset) and returns NULL; other errors
 * (MemoryError, an integer over Python's digit limit) propagate as they are. The caller holds
 * the GIL. */
PyObject *gw_json_loads(const char *buf, size_t len, PyObject *error_type);

#ifdef __cplusplus
}
#endif

#endif
