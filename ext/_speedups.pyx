# cython: language_level=3
# The gateway's one compiled extension. Each concern lives in an include file so the hot path
# stays in one module: a call from one extension module to another costs a Python-level call.
include "codecs.pxi"
include "splitter.pxi"
include "jsonsplit.pxi"
include "v1decode.pxi"
include "producer.pxi"
include "reports.pxi"
include "stream.pxi"
include "session.pxi"
include "whole.pxi"
include "spool.pxi"
include "consumer.pxi"
include "httphead.pxi"
include "jsondoc.pxi"
include "accesslog.pxi"
include "loadgen.pxi"
