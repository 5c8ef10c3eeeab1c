// v3 produce records read by simdjson's On-Demand API (declared in jsonsplit.h): the fast path
// of the record splitter for large records (ext/splitter.pxi) and the simdjson side of
// bench/splitjson.py. The reading itself is the kernel's (jsonsplit_kernel.cc, one per simdjson
// implementation); this file picks the kernel for this CPU.
//
// The reader accepts a record only when the splitter's own parser would accept it with the
// same fields: every value is walked (On-Demand checks only what is read), every string
// unescaped (which checks its escapes and surrogate pairs; simdjson's stage 1 has checked the
// UTF-8 and the unescaped control characters of the whole record), every number checked by the
// JSON grammar from its text (simdjson would refuse integers beyond 64 bits that JSON allows),
// and the nesting depth counted as the splitter counts it. Whatever it does not accept goes to
// the splitter's parser, which words the error: a refusal here only costs time.

#include "jsonsplit.h"

#include <new>
#include <string>

#include "jsonsplit_kernel.h"
#include "simdjson.h"

struct gw_js_reader {
  gw_js_kernel_reader *kernel;
};

namespace {

// simdjson's run-time choice for this CPU (its DOM API's), mapped to a kernel compiled here.
const char *kernel_name() {
  static const std::string name = simdjson::get_active_implementation()->name();
#ifdef GW_JS_X86
  if (name == "icelake") return "icelake";
  if (name == "haswell") return "haswell";
#endif
  return "builtin";
}

}  // namespace

extern "C" const char *gw_js_kernel(void) {
  const char *name = kernel_name();
  if (std::string(name) == "builtin") {
    static const std::string builtin =
        std::string("builtin ") + simdjson::builtin_implementation()->name();
    return builtin.c_str();
  }
  return name;
}

extern "C" gw_js_reader *gw_js_reader_new(const char *kernel) {
  std::string name = kernel != nullptr ? kernel : kernel_name();
#ifdef GW_JS_X86
  // Only a kernel this CPU runs: simdjson's choice, or one below it.
  const std::string best = kernel_name();
  if ((name == "icelake" && best != "icelake") ||
      (name == "haswell" && best != "icelake" && best != "haswell")) {
    return nullptr;
  }
#endif
  gw_js_reader *r = new (std::nothrow) gw_js_reader();
  if (r == nullptr) return nullptr;
#ifdef GW_JS_X86
  if (name == "icelake") {
    r->kernel = gw_js_new_icelake();
  } else if (name == "haswell") {
    r->kernel = gw_js_new_haswell();
  } else {
    r->kernel = gw_js_new_builtin();
  }
#else
  r->kernel = gw_js_new_builtin();
#endif
  if (r->kernel == nullptr) {
    delete r;
    return nullptr;
  }
  return r;
}

extern "C" void gw_js_reader_free(gw_js_reader *r) {
  if (r == nullptr) return;
  delete r->kernel;
  delete r;
}

extern "C" void gw_js_reader_trim(gw_js_reader *r) { r->kernel->trim(); }

extern "C" int gw_js_record_read(gw_js_reader *r, const char *buf, size_t len,
                                 gw_js_record *out) {
  return r->kernel->record_read(buf, len, out);
}

extern "C" int gw_js_stream_feed(gw_js_reader *r, const char *buf, size_t len) {
  return r->kernel->stream_feed(buf, len);
}

extern "C" int gw_js_stream_next(gw_js_reader *r, gw_js_record *out) {
  return r->kernel->stream_next(out);
}
