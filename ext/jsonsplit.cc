// v3 produce records read by simdjson's On-Demand API (declared in jsonsplit.h): the fast path
// of the record splitter (ext/splitter.pxi) and the simdjson side of bench/splitjson.py.
//
// The reader accepts a record only when the splitter's own parser would accept it with the
// same fields: every value is walked (On-Demand checks only what is read), every string
// unescaped (which checks its escapes and surrogate pairs; simdjson's stage 1 has checked the
// UTF-8 and the unescaped control characters of the whole input), every number checked by the
// JSON grammar from its text (simdjson would refuse integers beyond 64 bits that JSON allows),
// and the nesting depth counted as the splitter counts it. Whatever it does not accept goes to
// the splitter's parser, which words the error: a refusal here only costs time.
//
// Kernel: simdjson's single header compiles On-Demand for one implementation only, the best the
// compiler flags allow on every CPU of the target: on x86-64 without -march, "fallback" (only
// the DOM API dispatches at run time). Compiled apart with the AVX2 and AVX-512 flags and picked
// at run time, its "haswell" and "icelake" kernels read these records 1-4% faster (7 rounds of
// bench/splitjson.py's bodies): walking the values and building the items take the time, not
// the structural index. Not worth objects compiled for instruction sets a CPU may lack.

#include "jsonsplit.h"
#include "jsontext.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>

#include "simdjson.h"

namespace {

namespace ondemand = simdjson::ondemand;

// A buffer larger than this is freed after the call instead of kept for the next one.
constexpr size_t KEEP_CAPACITY = 1 << 20;

using gw_json::trim_end;

// Validates the value v, at `depth` containers (a container inside it is at depth + 1).
bool walk(ondemand::value v, int depth) {
  ondemand::json_type type;
  if (v.type().get(type)) return false;
  switch (type) {
    case ondemand::json_type::object: {
      if (depth + 1 > GW_JS_MAX_DEPTH) return false;
      ondemand::object obj;
      if (v.get_object().get(obj)) return false;
      for (auto member : obj) {
        ondemand::field field;
        std::string_view name;
        if (std::move(member).get(field)) return false;
        if (field.unescaped_key().get(name)) return false;
        if (!walk(field.value(), depth + 1)) return false;
      }
      return true;
    }
    case ondemand::json_type::array: {
      if (depth + 1 > GW_JS_MAX_DEPTH) return false;
      ondemand::array arr;
      if (v.get_array().get(arr)) return false;
      for (auto element : arr) {
        ondemand::value child;
        if (std::move(element).get(child)) return false;
        if (!walk(child, depth + 1)) return false;
      }
      return true;
    }
    case ondemand::json_type::string: {
      std::string_view s;
      return !v.get_string().get(s);
    }
    case ondemand::json_type::number: {
      return gw_json::number_token(v.raw_json_token());
    }
    case ondemand::json_type::boolean: {
      std::string_view t = v.raw_json_token();
      return gw_json::atom(t, "true") || gw_json::atom(t, "false");
    }
    case ondemand::json_type::null:
      return gw_json::atom(v.raw_json_token(), "null");
    default:
      return false;
  }
}

bool is(std::string_view s, const char *lit) { return s == std::string_view(lit); }

template <typename Doc>
struct RecordReader {
  Doc &doc;
  gw_js_record *out;

  bool string(ondemand::value &v, gw_js_span &span) {
    std::string_view s;
    if (v.get_string().get(s)) return false;
    span = {s.data(), s.size()};
    return true;
  }

  bool partition(ondemand::value v) {
    ondemand::json_type type;
    if (v.type().get(type)) return false;
    if (type == ondemand::json_type::null) {
      bool null = false;
      out->partition = -1;
      return !v.is_null().get(null) && null;
    }
    std::string_view t;
    if (type != ondemand::json_type::number) return false;
    t = v.raw_json_token();
    t = trim_end(t);
    // Plain digits only, at most 10, within int32; the rest ("-0", fractions, out of range)
    // is the splitter's to judge and word.
    if (t.empty() || t.size() > 10 || (t[0] == '0' && t.size() > 1)) return false;
    long long p = 0;
    for (char c : t) {
      if (c < '0' || c > '9') return false;
      p = p * 10 + (c - '0');
    }
    if (p > 2147483647LL) return false;
    out->partition = p;
    return true;
  }

  bool timestamp(ondemand::value v) {
    ondemand::json_type type;
    if (v.type().get(type)) return false;
    if (type == ondemand::json_type::null) {
      bool null = false;
      out->has_timestamp = 0;
      return !v.is_null().get(null) && null;
    }
    if (type != ondemand::json_type::string) return false;
    out->has_timestamp = 1;
    return string(v, out->timestamp);
  }

  bool headers(ondemand::value v) {
    ondemand::json_type type;
    if (v.type().get(type)) return false;
    if (type == ondemand::json_type::null) {
      bool null = false;
      out->has_headers = 0;
      return !v.is_null().get(null) && null;
    }
    ondemand::array arr;
    if (type != ondemand::json_type::array || v.get_array().get(arr)) return false;
    out->has_headers = 1;
    out->n_headers = 0;
    for (auto element : arr) {
      ondemand::object obj;
      if (std::move(element).get_object().get(obj)) return false;
      int i = out->n_headers;
      if (i == GW_JS_MAX_HEADERS) return false;
      int seen = 0;
      out->header_has_value[i] = 0;
      for (auto member : obj) {
        ondemand::field field;
        std::string_view name;
        if (std::move(member).get(field) || field.unescaped_key().get(name)) return false;
        ondemand::value fv = field.value();
        ondemand::json_type ft;
        if (fv.type().get(ft)) return false;
        if (is(name, "name") && !(seen & 1) && ft == ondemand::json_type::string) {
          seen |= 1;
          if (!string(fv, out->header_name[i])) return false;
        } else if (is(name, "value") && !(seen & 2)) {
          seen |= 2;
          if (ft == ondemand::json_type::string) {
            out->header_has_value[i] = 1;
            if (!string(fv, out->header_value[i])) return false;
          } else {
            bool null = false;
            if (ft != ondemand::json_type::null || fv.is_null().get(null) || !null) return false;
          }
        } else {
          return false;
        }
      }
      if (!(seen & 1)) return false;
      out->n_headers = i + 1;
    }
    return true;
  }

  bool side(ondemand::value v, int k) {
    ondemand::json_type type;
    if (v.type().get(type)) return false;
    out->side_type[k] = GW_JS_T_NONE;
    out->side_kind[k] = GW_JS_D_ABSENT;
    if (type == ondemand::json_type::null) {
      bool null = false;
      return !v.is_null().get(null) && null;
    }
    ondemand::object obj;
    if (type != ondemand::json_type::object || v.get_object().get(obj)) return false;
    int seen = 0, data_type = GW_JS_T_NONE;
    for (auto member : obj) {
      ondemand::field field;
      std::string_view name;
      if (std::move(member).get(field) || field.unescaped_key().get(name)) return false;
      ondemand::value fv = field.value();
      if (is(name, "type") && !(seen & 1)) {
        seen |= 1;
        std::string_view t;
        if (fv.get_string().get(t)) return false;
        if (is(t, "BINARY")) {
          data_type = GW_JS_T_BINARY;
        } else if (is(t, "JSON")) {
          data_type = GW_JS_T_JSON;
        } else if (is(t, "STRING")) {
          data_type = GW_JS_T_STRING;
        } else {
          return false;
        }
      } else if (is(name, "data") && !(seen & 2)) {
        seen |= 2;
        ondemand::json_type dt;
        if (fv.type().get(dt)) return false;
        std::string_view token = fv.raw_json_token();
        if (dt == ondemand::json_type::string) {
          out->side_kind[k] = GW_JS_D_STRING;
          token = trim_end(token);
          out->side_text[k] = {token.data(), token.size()};
          if (!string(fv, out->side_string[k])) return false;
        } else if (dt == ondemand::json_type::null) {
          bool null = false;
          out->side_kind[k] = GW_JS_D_NULL;
          if (fv.is_null().get(null) || !null) return false;
        } else {
          out->side_kind[k] = GW_JS_D_OTHER;
          const char *start = token.data();
          // The record is level 1, key/value level 2: the data is read at depth 2.
          if (!walk(fv, 2)) return false;
          if (dt == ondemand::json_type::object || dt == ondemand::json_type::array) {
            // Walked to its closing bracket: the reader now stands at what follows it.
            const char *end;
            if (doc.current_location().get(end)) return false;
            token = trim_end(std::string_view(start, static_cast<size_t>(end - start)));
          } else {
            token = trim_end(token);
          }
          out->side_text[k] = {token.data(), token.size()};
        }
      } else {
        return false;
      }
    }
    if (data_type == GW_JS_T_NONE) return false;
    out->side_type[k] = data_type;
    return true;
  }

  bool record() {
    ondemand::object obj;
    if (doc.get_object().get(obj)) return false;
    out->partition = -1;
    out->has_timestamp = 0;
    out->has_headers = 0;
    out->n_headers = 0;
    out->side_type[0] = out->side_type[1] = GW_JS_T_NONE;
    out->side_kind[0] = out->side_kind[1] = GW_JS_D_ABSENT;
    int seen = 0;
    for (auto member : obj) {
      ondemand::field field;
      std::string_view name;
      if (std::move(member).get(field) || field.unescaped_key().get(name)) return false;
      int id;
      if (is(name, "partition_id")) {
        id = 1;
      } else if (is(name, "headers")) {
        id = 2;
      } else if (is(name, "key")) {
        id = 3;
      } else if (is(name, "value")) {
        id = 4;
      } else if (is(name, "timestamp")) {
        id = 5;
      } else {
        return false;
      }
      if (seen & (1 << id)) return false;
      seen |= 1 << id;
      ondemand::value v = field.value();
      bool ok;
      switch (id) {
        case 1: ok = partition(v); break;
        case 2: ok = headers(v); break;
        case 3: ok = side(v, 0); break;
        case 4: ok = side(v, 1); break;
        default: ok = timestamp(v); break;
      }
      if (!ok) return false;
    }
    return true;
  }
};


struct KernelReader {
  ondemand::parser parser;
  char *buf = nullptr;  // the padded copy: records, then SIMDJSON_PADDING zero bytes
  size_t cap = 0;
  size_t len = 0;
  // The stream of concatenated records (gw_js_stream_*).
  ondemand::document_stream stream;
  ondemand::document_stream::iterator it;
  bool streaming = false;
  size_t kept = 0;  // bytes at the end of buf that are a record not yet complete

  ~KernelReader() { std::free(buf); }

  bool reserve(size_t n) {
    if (n + simdjson::SIMDJSON_PADDING <= cap) return true;
    size_t need = n + simdjson::SIMDJSON_PADDING;
    size_t want = cap * 2 > need ? cap * 2 : need;
    char *grown = static_cast<char *>(std::realloc(buf, want));
    if (grown == nullptr) return false;
    buf = grown;
    cap = want;
    return true;
  }

  void trim() {
    if (parser.capacity() > KEEP_CAPACITY) parser = ondemand::parser();
    if (cap > KEEP_CAPACITY) {
      std::free(buf);
      buf = nullptr;
      cap = len = kept = 0;
      streaming = false;
    }
  }

  int record_read(const char *data, size_t n, gw_js_record *out) {
    // simdjson reads up to SIMDJSON_PADDING bytes past the end: the record is copied into the
    // reader's padded buffer (a memcpy: cheap next to the parse).
    streaming = false;
    len = kept = 0;
    if (!reserve(n)) return -1;
    std::memcpy(buf, data, n);
    std::memset(buf + n, 0, simdjson::SIMDJSON_PADDING);
    len = n;
    ondemand::document doc;
    if (parser.iterate(buf, n, cap).get(doc)) return 0;
    RecordReader<ondemand::document> reader{doc, out};
    if (!reader.record()) return 0;
    return doc.at_end() ? 1 : 0;
  }

  int stream_feed(const char *data, size_t n, bool carry) {
    // What is kept of the previous feed (a record not yet complete) moves to the front.
    if (!carry) kept = 0;
    if (kept > 0 && kept < len) std::memmove(buf, buf + len - kept, kept);
    len = kept;
    kept = 0;
    streaming = false;
    if (!reserve(len + n)) return -1;
    std::memcpy(buf + len, data, n);
    len += n;
    std::memset(buf + len, 0, simdjson::SIMDJSON_PADDING);
    // One batch over the whole buffer: every record fits it (and stage 1 runs once).
    size_t batch = len > ondemand::DEFAULT_BATCH_SIZE ? len : ondemand::DEFAULT_BATCH_SIZE;
    if (parser.iterate_many(reinterpret_cast<const uint8_t *>(buf), len, batch).get(stream)) {
      return -2;
    }
    it = stream.begin();
    streaming = true;
    return 0;
  }

  int stream_next(gw_js_record *out, size_t *start, size_t *end) {
    if (!streaming) return 0;
    if (!(it != stream.end())) {
      streaming = false;
      kept = stream.truncated_bytes();
      return 0;
    }
    ondemand::document_reference doc;
    if (it.error() || (*it).get(doc)) {
      streaming = false;
      return -2;
    }
    // Where the record lies in what was fed: from its '{' to its '}', found on the structural
    // index (before the record is read: source() counts brackets from the reader's position).
    std::string_view text = it.source();
    *start = it.current_index();
    *end = *start + text.size();
    RecordReader<ondemand::document_reference> reader{doc, out};
    bool ok = reader.record();
    ++it;
    return ok ? 1 : -2;
  }
};

}  // namespace

struct gw_js_reader {
  KernelReader kernel;
};

extern "C" gw_js_reader *gw_js_reader_new(void) { return new (std::nothrow) gw_js_reader(); }

extern "C" void gw_js_reader_free(gw_js_reader *r) { delete r; }

extern "C" void gw_js_reader_trim(gw_js_reader *r) { r->kernel.trim(); }

extern "C" int gw_js_record_read(gw_js_reader *r, const char *buf, size_t len,
                                 gw_js_record *out) {
  return r->kernel.record_read(buf, len, out);
}

extern "C" int gw_js_stream_feed(gw_js_reader *r, const char *buf, size_t len, int carry) {
  return r->kernel.stream_feed(buf, len, carry != 0);
}

extern "C" int gw_js_stream_next(gw_js_reader *r, gw_js_record *out, size_t *start,
                                 size_t *end) {
  return r->kernel.stream_next(out, start, end);
}
