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

/* The entries of the batch document {"entries":[...]} in buf[0:len], without objects for
 * their records: a list with, per entry, None (not an object) or the tuple (id, ids, start,
 * cut_start, cut_end, end), where id is the first "id" member's string (None when there is none
 * or it is not a string), ids the number of "id" members, and the entry's text without that
 * member is buf[start:cut_start] + buf[cut_end:end]. None when the document is JSON of another
 * shape. A document gw_json_loads refuses raises as it does (except that an integer has no
 * digit limit: none is converted). */
PyObject *gw_json_batch(const char *buf, size_t len, PyObject *error_type);

#ifdef __cplusplus
}
#endif

#endif
