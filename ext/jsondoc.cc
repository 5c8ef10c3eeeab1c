// Whole JSON documents into Python objects with simdjson's On-Demand API (declared in
// jsondoc.h). simdjson itself is compiled from the pysimdjson wheel's simdjson.cpp (setup.py).
//
// On-Demand rather than simdjson's DOM: the converter walks every value once, in document
// order, which is exactly On-Demand's single pass, and it skips the DOM's tape (one more copy
// of the document). On-Demand reports where it stopped (current_location), which the error
// needs for its byte offset; the DOM parser reports no position at all.
//
// The objects are those json.loads makes: dict (the last of repeated names wins), list, str,
// int (any size: integers beyond 64 bits are read from their text by PyLong_FromString, with
// Python's digit limit), float (numbers beyond the double range are +-inf, as float() reads
// them), True, False, None. What JSON (RFC 8259) is not, json.loads takes and this refuses:
// NaN, Infinity, -Infinity; it also refuses a string escaping a lone UTF-16 surrogate
// (simdjson decodes to UTF-8, which cannot hold one) and nesting deeper than MAX_DEPTH.
//
// A records:batch body gets its own walk (gw_json_batch): the same checks, no objects for the
// records, and per entry the byte spans of its text around its "id" member, so the splitter
// reads each record as the client wrote it (docs/api.md §1, "Batch variant").

#include "jsondoc.h"
#include "jsontext.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "simdjson.h"

using namespace simdjson;

namespace {

// As deep as simdjson's own default; json.loads stops near 1000 (the recursion limit). Each
// level is one C++ frame of a few hundred bytes.
constexpr int MAX_DEPTH = 1024;
// A parser keeps the buffers of the largest document it has parsed; past this it is replaced
// after the parse, so one large body does not pin its memory for the life of the process.
constexpr size_t KEEP_CAPACITY = 1 << 20;

struct Loader {
  const char *base;  // the padded copy of the document
  size_t len;
  PyObject *error_type;
  ondemand::document *doc;
  // Where the last number read from its text ended: a document that is such a number is not
  // consumed by reading its text, so its end is checked from here.
  const char *text_end = nullptr;

  // Raises error_type(message, N); N is where On-Demand stopped, or the end of the document
  // when it stopped outside it (or had not started: the errors of stage 1, the structural
  // index, have no position; utf8_error_at finds the one of a UTF-8 error).
  PyObject *fail(error_code code, const char *what = nullptr, size_t known = SIZE_MAX) {
    size_t pos = len;
    const char *at = nullptr;
    if (known != SIZE_MAX) {
      pos = known;
    } else if (doc == nullptr) {
      pos = utf8_error_at(code);
    } else if (!doc->current_location().get(at) && at >= base && at <= base + len) {
      pos = static_cast<size_t>(at - base);
    }
    if (known == SIZE_MAX && (code == INCOMPLETE_ARRAY_OR_OBJECT || code == UNCLOSED_STRING)) {
      pos = len;
    }
    std::string msg = what != nullptr ? what : reason(code);
    PyObject *r = PyObject_CallFunction(error_type, "s#n", msg.data(),
                                        static_cast<Py_ssize_t>(msg.size()),
                                        static_cast<Py_ssize_t>(pos));
    if (r != nullptr) {
      PyErr_SetObject(reinterpret_cast<PyObject *>(Py_TYPE(r)), r);
      Py_DECREF(r);
    }
    return nullptr;
  }

  static const char *reason(error_code code) {
    switch (code) {
      case EMPTY: return "no JSON value";
      case TAPE_ERROR: return "not JSON (a misplaced or missing comma, colon, bracket or name)";
      case INCOMPLETE_ARRAY_OR_OBJECT: return "an array or object not closed";
      case UNCLOSED_STRING: return "a string not closed";
      case UTF8_ERROR: return "not UTF-8";
      case UNESCAPED_CHARS: return "a control character not escaped in a string";
      case STRING_ERROR: return "an invalid string escape (or a lone surrogate)";
      case NUMBER_ERROR: return "an invalid number";
      case T_ATOM_ERROR: case F_ATOM_ERROR: case N_ATOM_ERROR: case INCORRECT_TYPE:
        return "not a JSON value";
      case TRAILING_CONTENT: return "more after the JSON value";
      case DEPTH_ERROR: return "nested too deeply";
      default: return error_message(code);
    }
  }

  // For a UTF-8 error, the offset of the first byte that is not UTF-8 (simdjson says only
  // that there is one); otherwise the end of the document.
  size_t utf8_error_at(error_code code) {
    if (code != UTF8_ERROR) return len;
    PyObject *s = PyUnicode_DecodeUTF8(base, static_cast<Py_ssize_t>(len), "strict");
    if (s != nullptr) {
      Py_DECREF(s);
      return len;
    }
    size_t pos = len;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != nullptr) {
      Py_ssize_t start;
      if (PyUnicodeDecodeError_GetStart(value, &start) == 0) pos = static_cast<size_t>(start);
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
    return pos;
  }

  // A number simdjson could not hold in 64 bits or a finite double, read by Python from its
  // text (checked to be a JSON number: PyLong_FromString and float() take more).
  PyObject *number_from_text(std::string_view token, size_t n, bool integer) {
    std::string text(token.substr(0, n));
    text_end = token.data() + n;
    if (integer) return PyLong_FromString(text.c_str(), nullptr, 10);
    double d = PyOS_string_to_double(text.c_str(), nullptr, nullptr);
    if (d == -1.0 && PyErr_Occurred()) return nullptr;
    return PyFloat_FromDouble(d);
  }

  PyObject *str(std::string_view s) {
    // simdjson has checked the UTF-8 and undone the escapes.
    return PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), nullptr);
  }

  // One value: T is ondemand::value, or ondemand::document for the top level (a scalar
  // document cannot be had as a value).
  template <typename T>
  PyObject *convert(T &v, int depth) {
    ondemand::json_type type;
    if (auto e = v.type().get(type)) return fail(e);
    switch (type) {
      case ondemand::json_type::object: {
        if (depth >= MAX_DEPTH) return fail(DEPTH_ERROR, "nested too deeply");
        ondemand::object obj;
        if (auto e = v.get_object().get(obj)) return fail(e);
        PyObject *out = PyDict_New();
        if (out == nullptr) return nullptr;
        for (auto member : obj) {
          ondemand::field field;
          std::string_view name;
          if (auto e = std::move(member).get(field)) return drop(out, fail(e));
          if (auto e = field.unescaped_key().get(name)) return drop(out, fail(e));
          PyObject *key = str(name);
          if (key == nullptr) return drop(out, nullptr);
          ondemand::value child = field.value();
          PyObject *item = convert(child, depth + 1);
          if (item == nullptr) {
            Py_DECREF(key);
            return drop(out, nullptr);
          }
          int r = PyDict_SetItem(out, key, item);
          Py_DECREF(key);
          Py_DECREF(item);
          if (r < 0) return drop(out, nullptr);
        }
        return out;
      }
      case ondemand::json_type::array: {
        if (depth >= MAX_DEPTH) return fail(DEPTH_ERROR, "nested too deeply");
        ondemand::array arr;
        if (auto e = v.get_array().get(arr)) return fail(e);
        PyObject *out = PyList_New(0);
        if (out == nullptr) return nullptr;
        for (auto element : arr) {
          ondemand::value child;
          if (auto e = std::move(element).get(child)) return drop(out, fail(e));
          PyObject *item = convert(child, depth + 1);
          if (item == nullptr) return drop(out, nullptr);
          int r = PyList_Append(out, item);
          Py_DECREF(item);
          if (r < 0) return drop(out, nullptr);
        }
        return out;
      }
      case ondemand::json_type::string: {
        std::string_view s;
        if (auto e = v.get_string().get(s)) return fail(e);
        return str(s);
      }
      case ondemand::json_type::number: {
        // simdjson's number accessors do not all check where the number ends ("1;" reads as
        // 1): the token (up to the next structural character) must be one JSON number and
        // whitespace.
        std::string_view token;
        if (auto e = raw_token(v).get(token)) return fail(e);
        bool integer;
        size_t n = gw_json::number_length(token, &integer);
        if (n == 0 || !gw_json::all_blank(token.substr(n))) return fail(NUMBER_ERROR);
        ondemand::number_type kind;
        if (auto e = v.get_number_type().get(kind)) return fail(e);
        if (kind == ondemand::number_type::signed_integer) {
          int64_t i;
          if (!v.get_int64().get(i)) return PyLong_FromLongLong(i);
        } else if (kind == ondemand::number_type::unsigned_integer) {
          uint64_t u;
          if (!v.get_uint64().get(u)) return PyLong_FromUnsignedLongLong(u);
        } else if (kind == ondemand::number_type::floating_point_number) {
          double d;
          if (!v.get_double().get(d)) return PyFloat_FromDouble(d);
        }
        // A big integer or a double out of range.
        return number_from_text(token, n, integer);
      }
      case ondemand::json_type::boolean: {
        // As for numbers, the token is checked whole (" fals" at the end of a document
        // otherwise reads as false).
        std::string_view token;
        if (auto e = raw_token(v).get(token)) return fail(e);
        if (!gw_json::atom(token, "true") && !gw_json::atom(token, "false")) return fail(T_ATOM_ERROR);
        bool b;
        if (auto e = v.get_bool().get(b)) return fail(e);
        return PyBool_FromLong(b);
      }
      case ondemand::json_type::null: {
        std::string_view token;
        if (auto e = raw_token(v).get(token)) return fail(e);
        if (!gw_json::atom(token, "null")) return fail(N_ATOM_ERROR);
        bool null;
        if (auto e = v.is_null().get(null)) return fail(e);
        if (!null) return fail(N_ATOM_ERROR);
        Py_RETURN_NONE;
      }
      default:
        return fail(INCORRECT_TYPE, "not a JSON value");
    }
  }

  // -- checking without objects (the batch walk) ------------------------------------------
  //
  // check() reads one value exactly as convert() would, and refuses what it refuses, but makes
  // no objects (so an integer has no digit limit: the text is kept, never converted), and sets
  // *end to where the value's text ends (before any blank after it). The walk of a batch needs
  // that end to cut entries out of the document.

  static const char *skip_blank(const char *p) {
    while (gw_json::blank(*p)) p++;
    return p;
  }

  static const char *trimmed_end(std::string_view token) {
    return token.data() + gw_json::trim_end(token).size();
  }

  // In a record of a batch entry (record), what json.loads takes but convert() does not is
  // left to the splitter, which judges it as in a stream: a string escaping a lone surrogate
  // (read here with U+FFFD in its place), nesting past MAX_DEPTH (skipped by counting
  // brackets; the splitter reads no deeper than 64 levels), NaN and Infinity.
  template <typename T>
  bool too_deep(T &v, const char **end, bool record) {
    if (!record) return fail(DEPTH_ERROR, "nested too deeply"), false;
    std::string_view text;
    if (auto e = v.raw_json().get(text)) return fail(e), false;
    *end = trimmed_end(text);
    return true;
  }

  template <typename T>
  bool check(T &v, int depth, const char **end, bool record = false) {
    std::string_view token;
    if (record) {
      // NaN, Infinity and -Infinity are no JSON values, but a stream refuses them record by
      // record: left to the splitter, as the tokens they are.
      if (auto e = raw_token(v).get(token)) return fail(e), false;
      for (std::string_view word : {"NaN", "Infinity", "-Infinity"}) {
        if (gw_json::atom(token, word)) {
          *end = token.data() + word.size();
          return true;
        }
      }
    }
    ondemand::json_type type;
    if (auto e = v.type().get(type)) return fail(e), false;
    switch (type) {
      case ondemand::json_type::object: {
        if (depth >= MAX_DEPTH) return too_deep(v, end, record);
        if (auto e = raw_token(v).get(token)) return fail(e), false;
        const char *last = token.data() + 1;
        ondemand::object obj;
        if (auto e = v.get_object().get(obj)) return fail(e), false;
        for (auto member : obj) {
          ondemand::field field;
          std::string_view name;
          if (auto e = std::move(member).get(field)) return fail(e), false;
          if (auto e = field.unescaped_key(record).get(name)) return fail(e), false;
          ondemand::value child = field.value();
          if (!check(child, depth + 1, &last, record)) return false;
        }
        *end = skip_blank(last) + 1;  // past the '}' (On-Demand has checked it is there)
        return true;
      }
      case ondemand::json_type::array: {
        if (depth >= MAX_DEPTH) return too_deep(v, end, record);
        if (auto e = raw_token(v).get(token)) return fail(e), false;
        const char *last = token.data() + 1;
        ondemand::array arr;
        if (auto e = v.get_array().get(arr)) return fail(e), false;
        for (auto element : arr) {
          ondemand::value child;
          if (auto e = std::move(element).get(child)) return fail(e), false;
          if (!check(child, depth + 1, &last, record)) return false;
        }
        *end = skip_blank(last) + 1;
        return true;
      }
      case ondemand::json_type::string: {
        if (auto e = raw_token(v).get(token)) return fail(e), false;
        std::string_view s;
        if (auto e = v.get_string(record).get(s)) return fail(e), false;
        *end = trimmed_end(token);
        return true;
      }
      case ondemand::json_type::number: {
        if (auto e = raw_token(v).get(token)) return fail(e), false;
        bool integer;
        size_t n = gw_json::number_length(token, &integer);
        if (n == 0 || !gw_json::all_blank(token.substr(n))) return fail(NUMBER_ERROR), false;
        *end = token.data() + n;
        return true;
      }
      case ondemand::json_type::boolean: {
        if (auto e = raw_token(v).get(token)) return fail(e), false;
        if (gw_json::atom(token, "true")) {
          *end = token.data() + 4;
        } else if (gw_json::atom(token, "false")) {
          *end = token.data() + 5;
        } else {
          return fail(T_ATOM_ERROR), false;
        }
        bool b;
        if (auto e = v.get_bool().get(b)) return fail(e), false;
        return true;
      }
      case ondemand::json_type::null: {
        if (auto e = raw_token(v).get(token)) return fail(e), false;
        if (!gw_json::atom(token, "null")) return fail(N_ATOM_ERROR), false;
        bool null;
        if (auto e = v.is_null().get(null)) return fail(e), false;
        if (!null) return fail(N_ATOM_ERROR), false;
        *end = token.data() + 4;
        return true;
      }
      default:
        return fail(INCORRECT_TYPE, "not a JSON value"), false;
    }
  }

  Py_ssize_t at(const char *p) const { return static_cast<Py_ssize_t>(p - base); }

  // One element of "entries" (depth 2): None when it is not an object; otherwise the tuple
  // (id, ids, start, cut_start, cut_end, end). id is the first "id" member's string (None when
  // there is none or it is not a string), ids how many "id" members there are; the record is
  // the document's bytes [start, cut_start) + [cut_end, end): the entry's own text without its
  // first "id" member (and one comma next to it).
  PyObject *entry(ondemand::value &v, const char **end) {
    ondemand::json_type type;
    if (auto e = v.type().get(type)) return fail(e);
    if (type != ondemand::json_type::object) {
      if (!check(v, 2, end)) return nullptr;
      Py_RETURN_NONE;
    }
    std::string_view token;
    if (auto e = raw_token(v).get(token)) return fail(e);
    const char *start = token.data(), *last = start + 1;
    const char *cut_start = nullptr, *cut_end = nullptr, *id_end = nullptr;
    bool cut_open = false;  // the id member was the last seen: its cut ends at the next name
    long ids = 0;
    PyObject *id = nullptr;
    ondemand::object obj;
    if (auto e = v.get_object().get(obj)) return fail(e);
    for (auto member : obj) {
      ondemand::field field;
      std::string_view name;
      if (auto e = std::move(member).get(field)) return release(id, fail(e));
      // The name's opening quote (read before unescaped_key(), which consumes the name).
      const char *name_at = field.key().raw() - 1;
      if (cut_open) {
        cut_end = name_at;
        cut_open = false;
      }
      if (auto e = field.unescaped_key(true).get(name)) return release(id, fail(e));
      ondemand::value child = field.value();
      if (name == "id" && ids++ == 0) {
        cut_start = name_at;
        cut_open = true;
        ondemand::json_type id_type;
        if (auto e = child.type().get(id_type)) return fail(e);
        if (id_type == ondemand::json_type::string) {
          std::string_view s;
          if (auto e = raw_token(child).get(token)) return fail(e);
          if (auto e = child.get_string(true).get(s)) return fail(e);
          id = str(s);
          if (id == nullptr) return nullptr;
          last = trimmed_end(token);
        } else if (!check(child, 3, &last, true)) {
          return nullptr;
        }
        id_end = last;
        continue;
      }
      if (!check(child, 3, &last, true)) return release(id, nullptr);
    }
    *end = skip_blank(last) + 1;
    if (cut_open) {
      // The id member was the last: cut it with the comma before it, if there is one.
      const char *p = cut_start;
      while (p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n' || p[-1] == '\r') p--;
      if (p[-1] == ',') cut_start = p - 1;
      cut_end = id_end;
    }
    if (ids == 0) cut_start = cut_end = *end;
    if (id == nullptr) {
      id = Py_None;
      Py_INCREF(id);
    }
    return Py_BuildValue("(Nlnnnn)", id, ids, at(start), at(cut_start), at(cut_end), at(*end));
  }

  static PyObject *release(PyObject *id, PyObject *result) {
    Py_XDECREF(id);
    return result;
  }

  // The document {"entries":[...]}: the list of its entries (entry()), or None when the
  // document is JSON of another shape. The whole document is checked first as convert() reads
  // it: a document that is not JSON raises, whatever its shape.
  PyObject *batch(ondemand::document &d) {
    ondemand::json_type type;
    if (auto e = d.type().get(type)) return fail(e);
    const char *end = nullptr;
    if (type != ondemand::json_type::object) {
      if (!check(d, 0, &end)) return nullptr;
      if (!finished(end, type)) return nullptr;
      Py_RETURN_NONE;
    }
    std::string_view token;
    if (auto e = raw_token(d).get(token)) return fail(e);
    const char *last = token.data() + 1;
    bool shape = true;
    long members = 0;
    PyObject *entries = nullptr;
    ondemand::object obj;
    if (auto e = d.get_object().get(obj)) return fail(e);
    for (auto member : obj) {
      ondemand::field field;
      std::string_view name;
      if (auto e = std::move(member).get(field)) return release(entries, fail(e));
      if (auto e = field.unescaped_key().get(name)) return release(entries, fail(e));
      ondemand::value child = field.value();
      ondemand::json_type child_type;
      if (auto e = child.type().get(child_type)) return release(entries, fail(e));
      if (members++ > 0 || name != "entries" || child_type != ondemand::json_type::array) {
        shape = false;
        if (!check(child, 1, &last)) return release(entries, nullptr);
        continue;
      }
      if (auto e = raw_token(child).get(token)) return fail(e);
      last = token.data() + 1;
      entries = PyList_New(0);
      if (entries == nullptr) return nullptr;
      ondemand::array arr;
      if (auto e = child.get_array().get(arr)) return release(entries, fail(e));
      for (auto element : arr) {
        ondemand::value item;
        if (auto e = std::move(element).get(item)) return release(entries, fail(e));
        PyObject *one = entry(item, &last);
        if (one == nullptr) return release(entries, nullptr);
        int r = PyList_Append(entries, one);
        Py_DECREF(one);
        if (r < 0) return release(entries, nullptr);
      }
      last = skip_blank(last) + 1;  // past the ']'
    }
    end = skip_blank(last) + 1;
    if (!finished(end, type)) return release(entries, nullptr);
    if (!shape || entries == nullptr) {
      Py_XDECREF(entries);
      Py_RETURN_NONE;
    }
    return entries;
  }

  // Nothing but blanks after the document's value, which ended at end.
  bool finished(const char *end, ondemand::json_type type) {
    bool at_end = skip_blank(end) == base + len;
    if (at_end && (type == ondemand::json_type::object || type == ondemand::json_type::array)) {
      at_end = doc->at_end();
    }
    if (!at_end) fail(TRAILING_CONTENT, "more after the JSON value");
    return at_end;
  }

  static simdjson_result<std::string_view> raw_token(ondemand::value &v) {
    return v.raw_json_token();
  }
  static simdjson_result<std::string_view> raw_token(ondemand::document &d) {
    return d.raw_json_token();
  }

  static PyObject *drop(PyObject *partial, PyObject *result) {
    Py_DECREF(partial);
    return result;
  }
};

ondemand::parser *shared_parser = nullptr;
bool shared_busy = false;  // a parse is under way (a finalizer run by the GC may re-enter)
padded_string shared_copy;

PyObject *load(ondemand::parser &parser, padded_string &copy, const char *buf, size_t len,
               PyObject *error_type, bool batch) {
  // simdjson reads up to SIMDJSON_PADDING bytes past the end: a bytes object has no such room,
  // so the document is copied into a padded buffer (a memcpy: cheap next to the parse).
  if (copy.data() == nullptr || copy.size() < len || copy.size() > len + KEEP_CAPACITY) {
    copy = padded_string(len);
    if (copy.data() == nullptr) return PyErr_NoMemory();
  }
  std::memcpy(copy.data(), buf, len);
  std::memset(copy.data() + len, 0, SIMDJSON_PADDING);
  Loader loader{copy.data(), len, error_type, nullptr};
  if (len >= 3 && std::memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
    // simdjson skips a byte order mark; json.loads of the text (what the gateway's endpoints
    // did before) refuses it, and JSON text must not begin with one (RFC 8259 §8.1).
    return loader.fail(UTF8_ERROR, "a UTF-8 byte order mark", 0);
  }
  ondemand::document doc;
  if (auto e = parser.iterate(copy.data(), len, len + SIMDJSON_PADDING).get(doc)) {
    return loader.fail(e);
  }
  loader.doc = &doc;
  if (batch) return loader.batch(doc);
  PyObject *out = loader.convert(doc, 0);
  if (out == nullptr) return nullptr;  // (after an error the document must not be touched)
  bool at_end;
  if (loader.text_end != nullptr && out != nullptr && !PyList_Check(out) && !PyDict_Check(out)) {
    const char *p = loader.text_end, *end = copy.data() + len;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    at_end = p == end;
  } else {
    at_end = doc.at_end();
  }
  if (!at_end) {
    Py_DECREF(out);
    return loader.fail(TRAILING_CONTENT, "more after the JSON value");
  }
  return out;
}

}  // namespace

extern "C" const char *gw_simdjson_implementation(void) {
  // The kernel of the On-Demand API, the only one the gateway calls: the one the build's target
  // allows (simdjson's run-time choice serves its DOM API). name() returns a std::string: kept,
  // so the pointer outlives the call.
  static const std::string name = builtin_implementation()->name();
  return name.c_str();
}

namespace {

PyObject *run(const char *buf, size_t len, PyObject *error_type, bool batch) {
  if (shared_busy) {
    ondemand::parser parser;
    padded_string copy;
    return load(parser, copy, buf, len, error_type, batch);
  }
  if (shared_parser == nullptr) {
    shared_parser = new (std::nothrow) ondemand::parser();
    if (shared_parser == nullptr) return PyErr_NoMemory();
  }
  shared_busy = true;
  PyObject *out = load(*shared_parser, shared_copy, buf, len, error_type, batch);
  if (shared_parser->capacity() > KEEP_CAPACITY) {
    delete shared_parser;
    shared_parser = nullptr;
    shared_copy = padded_string();
  }
  shared_busy = false;
  return out;
}

}  // namespace

extern "C" PyObject *gw_json_loads(const char *buf, size_t len, PyObject *error_type) {
  return run(buf, len, error_type, false);
}

extern "C" PyObject *gw_json_batch(const char *buf, size_t len, PyObject *error_type) {
  return run(buf, len, error_type, true);
}
