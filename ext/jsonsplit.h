/* v3 produce records read by simdjson's On-Demand API (ext/jsonsplit.cc), for the Cython module
 * (ext/jsonsplit.pxi): plain C declarations, so _speedups.c stays C.
 *
 * A record is accepted here only when it is certainly valid by the rules of the record splitter
 * (ext/splitter.pxi): valid JSON, nesting within GW_JS_MAX_DEPTH, known fields once each, the
 * right kinds. Anything else, or anything this reader does not judge (an integer partition
 * literal such as "-0", more than GW_JS_MAX_HEADERS headers), is "not accepted", and the
 * splitter's own parser decides and words the error. Strings and base64/timestamp checks are
 * left to the caller: the spans below point at the unescaped UTF-8 of each string. */
#ifndef GATEWAY_JSONSPLIT_H
#define GATEWAY_JSONSPLIT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The splitter's nesting limit; the record object is level 1. */
#define GW_JS_MAX_DEPTH 64
#define GW_JS_MAX_HEADERS 16

/* Kinds of a key/value "data" field and the data types: the splitter's _SPL_D_* / _SPL_T_*. */
enum { GW_JS_D_ABSENT = 0, GW_JS_D_NULL = 1, GW_JS_D_STRING = 2, GW_JS_D_OTHER = 3 };
enum { GW_JS_T_NONE = 0, GW_JS_T_BINARY = 1, GW_JS_T_JSON = 2, GW_JS_T_STRING = 3 };

typedef struct {
    const char *p;
    size_t n;
} gw_js_span;

typedef struct {
    long long partition;      /* -1: none */
    int has_timestamp;        /* timestamp: the string's value */
    gw_js_span timestamp;
    int has_headers;          /* 0: absent or null; 1: an array of n_headers */
    int n_headers;
    gw_js_span header_name[GW_JS_MAX_HEADERS];
    gw_js_span header_value[GW_JS_MAX_HEADERS];
    int header_has_value[GW_JS_MAX_HEADERS];
    /* [0]: key, [1]: value. type GW_JS_T_NONE: the side is null or absent. */
    int side_type[2];
    int side_kind[2];
    gw_js_span side_text[2];  /* the data's JSON text (OTHER: may hold whitespace; STRING: quoted) */
    gw_js_span side_string[2];  /* STRING kind: the string's unescaped value */
} gw_js_record;

/* The simdjson kernel of the readers' On-Demand API ("fallback" on x86-64: see jsonsplit.cc). */

/* One reader: a simdjson parser and a padded buffer, reused. NULL when out of memory. */
typedef struct gw_js_reader gw_js_reader;
gw_js_reader *gw_js_reader_new(void);
void gw_js_reader_free(gw_js_reader *r);
/* Frees the reader's buffers when a large record left them over 1 MiB (the spans of the last
 * record die with them; so does a partial record of a stream). */
void gw_js_reader_trim(gw_js_reader *r);

/* Reads the one record buf[0:len] (from '{' to its '}'). 1: accepted, *out filled (its spans
 * valid until the reader's next call); 0: not accepted; -1: out of memory. */
int gw_js_record_read(gw_js_reader *r, const char *buf, size_t len, gw_js_record *out);

/* Concatenated records, read by iterate_many in one pass: buf[0:len], after what was left of
 * the previous feed (a record not yet complete) if carry is set. Returns 0; -1 when out of
 * memory; -2 when simdjson refuses the whole (its structural index: bad UTF-8, say). */
int gw_js_stream_feed(gw_js_reader *r, const char *buf, size_t len, int carry);
/* The next complete record: 1 accepted (*out filled, valid until the next call), 0 none left in
 * what was fed (a partial record is kept for a feed with carry), -2 not accepted or not a
 * record. *start and *end: where the record lies (its '{' to after its '}') in the bytes read,
 * the carried ones first. */
int gw_js_stream_next(gw_js_reader *r, gw_js_record *out, size_t *start, size_t *end);

#ifdef __cplusplus
}
#endif

#endif
