# cython: language_level=3
# The gateway's one compiled extension. Each concern lives in an include file so the hot path
# stays in one module (docs: style.md, "a hot path spread across several extension modules").
include "splitter.pxi"
include "producer.pxi"
include "stream.pxi"
