// The interface between ext/jsonsplit.cc and its kernels (ext/jsonsplit_kernel.cc, compiled once
// per simdjson implementation). C++ only.
#ifndef GATEWAY_JSONSPLIT_KERNEL_H
#define GATEWAY_JSONSPLIT_KERNEL_H

#include <stddef.h>

#include "jsonsplit.h"

struct gw_js_kernel_reader {
  virtual ~gw_js_kernel_reader() = default;
  virtual int record_read(const char *data, size_t n, gw_js_record *out) = 0;
  virtual int stream_feed(const char *data, size_t n) = 0;
  virtual int stream_next(gw_js_record *out) = 0;
  virtual void trim() = 0;
};

// NULL when out of memory. The SIMD ones exist on x86-64 only (GW_JS_X86 set by setup.py).
gw_js_kernel_reader *gw_js_new_builtin();
gw_js_kernel_reader *gw_js_new_haswell();
gw_js_kernel_reader *gw_js_new_icelake();

#endif
