# The part of librdkafka's public C API that ext/producer.pxi and ext/consumer.pxi use, declared by us from the
# documented API (rdkafka.h's doc comments, INTRODUCTION.md): no librdkafka header is needed at
# build time, and none is vendored. We link the librdkafka shared library bundled in the
# confluent-kafka wheel (setup.py finds it), so these declarations must match that library's ABI:
#
# - handles are opaque pointers; enums are passed as int (their C type is an int-sized enum);
# - rd_kafka_message_t (a delivery report's or a consumed message) and the topic-partition list
#   (rd_kafka_topic_partition_t, rd_kafka_topic_partition_list_t) are the public structs we read
#   and write; their layouts have been stable since librdkafka 0.9 and are part of the
#   documented API;
# - numeric constants (error codes, vtypes, flags) are the documented values; the unit tests
#   check the error codes against confluent_kafka.KafkaError, which is compiled from the real
#   header, and tests/unit/test_rdproducer.py fails if the loaded library is older than 2.0.
#
# The C declarations are in the verbatim block (Cython emits it into the generated C); the
# Cython declarations below mirror them.

from libc.stdint cimport int32_t, int64_t

cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>
    #include <sys/types.h>

    typedef struct rd_kafka_s rd_kafka_t;
    typedef struct rd_kafka_conf_s rd_kafka_conf_t;
    typedef struct rd_kafka_topic_s rd_kafka_topic_t;
    typedef struct rd_kafka_topic_conf_s rd_kafka_topic_conf_t;
    typedef struct rd_kafka_queue_s rd_kafka_queue_t;
    typedef struct rd_kafka_headers_s rd_kafka_headers_t;

    /* Enums in rdkafka.h; int-sized, so int here. */
    typedef int rd_kafka_resp_err_t;
    typedef int rd_kafka_type_t;
    typedef int rd_kafka_conf_res_t;
    typedef int rd_kafka_timestamp_type_t;

    /* The documented public message struct (producer: what dr_msg_cb receives). */
    typedef struct rd_kafka_message_s {
        rd_kafka_resp_err_t err;
        rd_kafka_topic_t *rkt;
        int32_t partition;
        void *payload;
        size_t len;
        void *key;
        size_t key_len;
        int64_t offset;
        void *_private;   /* producer: the msg_opaque given to produce */
    } rd_kafka_message_t;

    const char *rd_kafka_version_str(void);
    int rd_kafka_version(void);
    const char *rd_kafka_err2str(rd_kafka_resp_err_t err);
    const char *rd_kafka_err2name(rd_kafka_resp_err_t err);
    rd_kafka_resp_err_t rd_kafka_last_error(void);

    rd_kafka_conf_t *rd_kafka_conf_new(void);
    void rd_kafka_conf_destroy(rd_kafka_conf_t *conf);
    rd_kafka_conf_res_t rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name,
                                          const char *value, char *errstr, size_t errstr_size);
    void rd_kafka_conf_set_dr_msg_cb(rd_kafka_conf_t *conf,
                                     void (*dr_msg_cb)(rd_kafka_t *rk,
                                                       const rd_kafka_message_t *rkmessage,
                                                       void *opaque));
    void rd_kafka_conf_set_error_cb(rd_kafka_conf_t *conf,
                                    void (*error_cb)(rd_kafka_t *rk, int err,
                                                     const char *reason, void *opaque));
    void rd_kafka_conf_set_stats_cb(rd_kafka_conf_t *conf,
                                    int (*stats_cb)(rd_kafka_t *rk, char *json,
                                                    size_t json_len, void *opaque));
    void rd_kafka_conf_set_opaque(rd_kafka_conf_t *conf, void *opaque);
    void rd_kafka_conf_set_log_cb(rd_kafka_conf_t *conf,
                                  void (*log_cb)(const rd_kafka_t *rk, int level,
                                                 const char *fac, const char *buf));
    void *rd_kafka_opaque(const rd_kafka_t *rk);
    rd_kafka_resp_err_t rd_kafka_set_log_queue(rd_kafka_t *rk, rd_kafka_queue_t *rkqu);

    rd_kafka_t *rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                             size_t errstr_size);
    void rd_kafka_destroy(rd_kafka_t *rk);
    int rd_kafka_poll(rd_kafka_t *rk, int timeout_ms);
    void rd_kafka_yield(rd_kafka_t *rk);
    int rd_kafka_outq_len(rd_kafka_t *rk);
    rd_kafka_resp_err_t rd_kafka_purge(rd_kafka_t *rk, int purge_flags);
    rd_kafka_resp_err_t rd_kafka_fatal_error(rd_kafka_t *rk, char *errstr, size_t errstr_size);
    rd_kafka_resp_err_t rd_kafka_test_fatal_error(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                                  const char *reason);

    rd_kafka_queue_t *rd_kafka_queue_get_main(rd_kafka_t *rk);
    void rd_kafka_queue_destroy(rd_kafka_queue_t *rkqu);
    void rd_kafka_queue_io_event_enable(rd_kafka_queue_t *rkqu, int fd, const void *payload,
                                        size_t size);

    rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic,
                                         rd_kafka_topic_conf_t *conf);
    void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt);

    rd_kafka_resp_err_t rd_kafka_producev(rd_kafka_t *rk, ...);
    int64_t rd_kafka_message_timestamp(const rd_kafka_message_t *rkmessage,
                                       rd_kafka_timestamp_type_t *tstype);

    rd_kafka_headers_t *rd_kafka_headers_new(size_t initial_count);
    void rd_kafka_headers_destroy(rd_kafka_headers_t *hdrs);
    rd_kafka_resp_err_t rd_kafka_header_add(rd_kafka_headers_t *hdrs, const char *name,
                                            ssize_t name_size, const void *value,
                                            ssize_t value_size);
    rd_kafka_resp_err_t rd_kafka_message_headers(const rd_kafka_message_t *rkmessage,
                                                 rd_kafka_headers_t **hdrsp);
    size_t rd_kafka_header_cnt(const rd_kafka_headers_t *hdrs);
    rd_kafka_resp_err_t rd_kafka_header_get_all(const rd_kafka_headers_t *hdrs, size_t idx,
                                                const char **namep, const void **valuep,
                                                size_t *sizep);

    /* Consumer (ext/consumer.pxi). */
    typedef struct rd_kafka_error_s rd_kafka_error_t;
    typedef struct rd_kafka_op_s rd_kafka_event_t;

    typedef struct rd_kafka_topic_partition_s {
        char *topic;
        int32_t partition;
        int64_t offset;
        void *metadata;
        size_t metadata_size;
        void *opaque;
        rd_kafka_resp_err_t err;
        void *_private;
    } rd_kafka_topic_partition_t;

    typedef struct rd_kafka_topic_partition_list_s {
        int cnt;
        int size;
        rd_kafka_topic_partition_t *elems;
    } rd_kafka_topic_partition_list_t;

    rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_new(int size);
    void rd_kafka_topic_partition_list_destroy(rd_kafka_topic_partition_list_t *rkparlist);
    rd_kafka_topic_partition_t *rd_kafka_topic_partition_list_add(
        rd_kafka_topic_partition_list_t *rktparlist, const char *topic, int32_t partition);
    rd_kafka_topic_partition_t *rd_kafka_topic_partition_list_find(
        const rd_kafka_topic_partition_list_t *rktparlist, const char *topic,
        int32_t partition);
    rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_copy(
        const rd_kafka_topic_partition_list_t *src);

    void rd_kafka_conf_set_offset_commit_cb(
        rd_kafka_conf_t *conf,
        void (*offset_commit_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                 rd_kafka_topic_partition_list_t *offsets, void *opaque));
    void rd_kafka_destroy_flags(rd_kafka_t *rk, int flags);
    void rd_kafka_mem_free(rd_kafka_t *rk, void *ptr);
    const char *rd_kafka_topic_name(const rd_kafka_topic_t *rkt);

    rd_kafka_resp_err_t rd_kafka_poll_set_consumer(rd_kafka_t *rk);
    rd_kafka_queue_t *rd_kafka_queue_get_consumer(rd_kafka_t *rk);
    rd_kafka_queue_t *rd_kafka_queue_new(rd_kafka_t *rk);
    size_t rd_kafka_queue_length(rd_kafka_queue_t *rkqu);
    rd_kafka_event_t *rd_kafka_queue_poll(rd_kafka_queue_t *rkqu, int timeout_ms);
    void rd_kafka_event_destroy(rd_kafka_event_t *rkev);

    rd_kafka_message_t *rd_kafka_consumer_poll(rd_kafka_t *rk, int timeout_ms);
    ssize_t rd_kafka_consume_batch_queue(rd_kafka_queue_t *rkqu, int timeout_ms,
                                         rd_kafka_message_t **rkmessages,
                                         size_t rkmessages_size);
    void rd_kafka_message_destroy(rd_kafka_message_t *rkmessage);
    const char *rd_kafka_message_errstr(const rd_kafka_message_t *rkmessage);

    rd_kafka_resp_err_t rd_kafka_subscribe(rd_kafka_t *rk,
                                           const rd_kafka_topic_partition_list_t *topics);
    rd_kafka_resp_err_t rd_kafka_unsubscribe(rd_kafka_t *rk);
    rd_kafka_resp_err_t rd_kafka_subscription(rd_kafka_t *rk,
                                              rd_kafka_topic_partition_list_t **topics);
    rd_kafka_resp_err_t rd_kafka_assign(rd_kafka_t *rk,
                                        const rd_kafka_topic_partition_list_t *partitions);
    rd_kafka_resp_err_t rd_kafka_assignment(rd_kafka_t *rk,
                                            rd_kafka_topic_partition_list_t **partitions);
    rd_kafka_error_t *rd_kafka_seek_partitions(rd_kafka_t *rk,
                                               rd_kafka_topic_partition_list_t *partitions,
                                               int timeout_ms);
    rd_kafka_resp_err_t rd_kafka_position(rd_kafka_t *rk,
                                          rd_kafka_topic_partition_list_t *partitions);
    rd_kafka_resp_err_t rd_kafka_committed(rd_kafka_t *rk,
                                           rd_kafka_topic_partition_list_t *partitions,
                                           int timeout_ms);
    rd_kafka_resp_err_t rd_kafka_commit(rd_kafka_t *rk,
                                        const rd_kafka_topic_partition_list_t *offsets,
                                        int async);
    rd_kafka_resp_err_t rd_kafka_commit_queue(
        rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *offsets,
        rd_kafka_queue_t *rkqu,
        void (*cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                   rd_kafka_topic_partition_list_t *offsets, void *opaque),
        void *opaque);
    rd_kafka_resp_err_t rd_kafka_offsets_store(rd_kafka_t *rk,
                                               rd_kafka_topic_partition_list_t *offsets);
    rd_kafka_resp_err_t rd_kafka_pause_partitions(rd_kafka_t *rk,
                                                  rd_kafka_topic_partition_list_t *partitions);
    rd_kafka_resp_err_t rd_kafka_resume_partitions(rd_kafka_t *rk,
                                                   rd_kafka_topic_partition_list_t *partitions);
    rd_kafka_resp_err_t rd_kafka_query_watermark_offsets(rd_kafka_t *rk, const char *topic,
                                                         int32_t partition, int64_t *low,
                                                         int64_t *high, int timeout_ms);
    rd_kafka_resp_err_t rd_kafka_get_watermark_offsets(rd_kafka_t *rk, const char *topic,
                                                       int32_t partition, int64_t *low,
                                                       int64_t *high);
    rd_kafka_error_t *rd_kafka_consumer_close_queue(rd_kafka_t *rk, rd_kafka_queue_t *rkqu);
    int rd_kafka_consumer_closed(rd_kafka_t *rk);
    char *rd_kafka_memberid(const rd_kafka_t *rk);

    rd_kafka_resp_err_t rd_kafka_error_code(const rd_kafka_error_t *error);
    const char *rd_kafka_error_string(const rd_kafka_error_t *error);
    int rd_kafka_error_is_retriable(const rd_kafka_error_t *error);
    void rd_kafka_error_destroy(rd_kafka_error_t *error);
    """
    ctypedef struct rd_kafka_t
    ctypedef struct rd_kafka_conf_t
    ctypedef struct rd_kafka_topic_t
    ctypedef struct rd_kafka_topic_conf_t
    ctypedef struct rd_kafka_queue_t
    ctypedef struct rd_kafka_headers_t
    ctypedef int rd_kafka_resp_err_t
    ctypedef int rd_kafka_type_t
    ctypedef int rd_kafka_conf_res_t
    ctypedef int rd_kafka_timestamp_type_t

    ctypedef struct rd_kafka_message_t:
        rd_kafka_resp_err_t err
        rd_kafka_topic_t *rkt
        int32_t partition
        void *payload
        size_t len
        void *key
        size_t key_len
        int64_t offset
        void *_private

    const char *rd_kafka_version_str() nogil
    int rd_kafka_version() nogil
    const char *rd_kafka_err2str(rd_kafka_resp_err_t err) nogil
    const char *rd_kafka_err2name(rd_kafka_resp_err_t err) nogil
    rd_kafka_resp_err_t rd_kafka_last_error() nogil

    rd_kafka_conf_t *rd_kafka_conf_new() nogil
    void rd_kafka_conf_destroy(rd_kafka_conf_t *conf) nogil
    rd_kafka_conf_res_t rd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name,
                                          const char *value, char *errstr,
                                          size_t errstr_size) nogil
    void rd_kafka_conf_set_dr_msg_cb(
        rd_kafka_conf_t *conf,
        void (*dr_msg_cb)(rd_kafka_t *, const rd_kafka_message_t *, void *) noexcept nogil) nogil
    void rd_kafka_conf_set_error_cb(
        rd_kafka_conf_t *conf,
        void (*error_cb)(rd_kafka_t *, int, const char *, void *) noexcept nogil) nogil
    void rd_kafka_conf_set_stats_cb(
        rd_kafka_conf_t *conf,
        int (*stats_cb)(rd_kafka_t *, char *, size_t, void *) noexcept nogil) nogil
    void rd_kafka_conf_set_opaque(rd_kafka_conf_t *conf, void *opaque) nogil
    void rd_kafka_conf_set_log_cb(
        rd_kafka_conf_t *conf,
        void (*log_cb)(const rd_kafka_t *, int, const char *, const char *) noexcept nogil) nogil
    void *rd_kafka_opaque(const rd_kafka_t *rk) nogil
    rd_kafka_resp_err_t rd_kafka_set_log_queue(rd_kafka_t *rk, rd_kafka_queue_t *rkqu) nogil

    rd_kafka_t *rd_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                             size_t errstr_size) nogil
    void rd_kafka_destroy(rd_kafka_t *rk) nogil
    int rd_kafka_poll(rd_kafka_t *rk, int timeout_ms) nogil
    void rd_kafka_yield(rd_kafka_t *rk) nogil
    int rd_kafka_outq_len(rd_kafka_t *rk) nogil
    rd_kafka_resp_err_t rd_kafka_purge(rd_kafka_t *rk, int purge_flags) nogil
    rd_kafka_resp_err_t rd_kafka_fatal_error(rd_kafka_t *rk, char *errstr,
                                             size_t errstr_size) nogil
    rd_kafka_resp_err_t rd_kafka_test_fatal_error(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                                  const char *reason) nogil

    rd_kafka_queue_t *rd_kafka_queue_get_main(rd_kafka_t *rk) nogil
    void rd_kafka_queue_destroy(rd_kafka_queue_t *rkqu) nogil
    void rd_kafka_queue_io_event_enable(rd_kafka_queue_t *rkqu, int fd, const void *payload,
                                        size_t size) nogil

    rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *rk, const char *topic,
                                         rd_kafka_topic_conf_t *conf) nogil
    void rd_kafka_topic_destroy(rd_kafka_topic_t *rkt) nogil

    # Variadic: (vtype, value...) pairs ending with RD_KAFKA_VTYPE_END. Every argument must
    # already have the C type librdkafka reads with va_arg (see ext/producer.pxi).
    rd_kafka_resp_err_t rd_kafka_producev(rd_kafka_t *rk, ...) nogil
    int64_t rd_kafka_message_timestamp(const rd_kafka_message_t *rkmessage,
                                       rd_kafka_timestamp_type_t *tstype) nogil

    rd_kafka_headers_t *rd_kafka_headers_new(size_t initial_count) nogil
    void rd_kafka_headers_destroy(rd_kafka_headers_t *hdrs) nogil
    rd_kafka_resp_err_t rd_kafka_header_add(rd_kafka_headers_t *hdrs, const char *name,
                                            Py_ssize_t name_size, const void *value,
                                            Py_ssize_t value_size) nogil
    rd_kafka_resp_err_t rd_kafka_message_headers(const rd_kafka_message_t *rkmessage,
                                                 rd_kafka_headers_t **hdrsp) nogil
    size_t rd_kafka_header_cnt(const rd_kafka_headers_t *hdrs) nogil
    rd_kafka_resp_err_t rd_kafka_header_get_all(const rd_kafka_headers_t *hdrs, size_t idx,
                                                const char **namep, const void **valuep,
                                                size_t *sizep) nogil

    # Consumer (ext/consumer.pxi).
    ctypedef struct rd_kafka_error_t
    ctypedef struct rd_kafka_event_t

    ctypedef struct rd_kafka_topic_partition_t:
        char *topic
        int32_t partition
        int64_t offset
        void *metadata
        size_t metadata_size
        void *opaque
        rd_kafka_resp_err_t err
        void *_private

    ctypedef struct rd_kafka_topic_partition_list_t:
        int cnt
        int size
        rd_kafka_topic_partition_t *elems

    rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_new(int size) nogil
    void rd_kafka_topic_partition_list_destroy(rd_kafka_topic_partition_list_t *rkparlist) nogil
    rd_kafka_topic_partition_t *rd_kafka_topic_partition_list_add(
        rd_kafka_topic_partition_list_t *rktparlist, const char *topic, int32_t partition) nogil
    rd_kafka_topic_partition_t *rd_kafka_topic_partition_list_find(
        const rd_kafka_topic_partition_list_t *rktparlist, const char *topic,
        int32_t partition) nogil
    rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_copy(
        const rd_kafka_topic_partition_list_t *src) nogil

    void rd_kafka_conf_set_offset_commit_cb(
        rd_kafka_conf_t *conf,
        void (*offset_commit_cb)(rd_kafka_t *, rd_kafka_resp_err_t,
                                 rd_kafka_topic_partition_list_t *, void *) noexcept nogil) nogil
    void rd_kafka_destroy_flags(rd_kafka_t *rk, int flags) nogil
    void rd_kafka_mem_free(rd_kafka_t *rk, void *ptr) nogil
    const char *rd_kafka_topic_name(const rd_kafka_topic_t *rkt) nogil

    rd_kafka_resp_err_t rd_kafka_poll_set_consumer(rd_kafka_t *rk) nogil
    rd_kafka_queue_t *rd_kafka_queue_get_consumer(rd_kafka_t *rk) nogil
    rd_kafka_queue_t *rd_kafka_queue_new(rd_kafka_t *rk) nogil
    size_t rd_kafka_queue_length(rd_kafka_queue_t *rkqu) nogil
    rd_kafka_event_t *rd_kafka_queue_poll(rd_kafka_queue_t *rkqu, int timeout_ms) nogil
    void rd_kafka_event_destroy(rd_kafka_event_t *rkev) nogil

    rd_kafka_message_t *rd_kafka_consumer_poll(rd_kafka_t *rk, int timeout_ms) nogil
    Py_ssize_t rd_kafka_consume_batch_queue(rd_kafka_queue_t *rkqu, int timeout_ms,
                                            rd_kafka_message_t **rkmessages,
                                            size_t rkmessages_size) nogil
    void rd_kafka_message_destroy(rd_kafka_message_t *rkmessage) nogil
    const char *rd_kafka_message_errstr(const rd_kafka_message_t *rkmessage) nogil

    rd_kafka_resp_err_t rd_kafka_subscribe(rd_kafka_t *rk,
                                           const rd_kafka_topic_partition_list_t *topics) nogil
    rd_kafka_resp_err_t rd_kafka_unsubscribe(rd_kafka_t *rk) nogil
    rd_kafka_resp_err_t rd_kafka_subscription(rd_kafka_t *rk,
                                              rd_kafka_topic_partition_list_t **topics) nogil
    rd_kafka_resp_err_t rd_kafka_assign(rd_kafka_t *rk,
                                        const rd_kafka_topic_partition_list_t *partitions) nogil
    rd_kafka_resp_err_t rd_kafka_assignment(rd_kafka_t *rk,
                                            rd_kafka_topic_partition_list_t **partitions) nogil
    rd_kafka_error_t *rd_kafka_seek_partitions(rd_kafka_t *rk,
                                               rd_kafka_topic_partition_list_t *partitions,
                                               int timeout_ms) nogil
    rd_kafka_resp_err_t rd_kafka_position(rd_kafka_t *rk,
                                          rd_kafka_topic_partition_list_t *partitions) nogil
    rd_kafka_resp_err_t rd_kafka_committed(rd_kafka_t *rk,
                                           rd_kafka_topic_partition_list_t *partitions,
                                           int timeout_ms) nogil
    rd_kafka_resp_err_t rd_kafka_commit(rd_kafka_t *rk,
                                        const rd_kafka_topic_partition_list_t *offsets,
                                        int async) nogil
    rd_kafka_resp_err_t rd_kafka_commit_queue(
        rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *offsets,
        rd_kafka_queue_t *rkqu,
        void (*cb)(rd_kafka_t *, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t *,
                   void *) noexcept nogil,
        void *opaque) nogil
    rd_kafka_resp_err_t rd_kafka_offsets_store(rd_kafka_t *rk,
                                               rd_kafka_topic_partition_list_t *offsets) nogil
    rd_kafka_resp_err_t rd_kafka_pause_partitions(
        rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions) nogil
    rd_kafka_resp_err_t rd_kafka_resume_partitions(
        rd_kafka_t *rk, rd_kafka_topic_partition_list_t *partitions) nogil
    rd_kafka_resp_err_t rd_kafka_query_watermark_offsets(rd_kafka_t *rk, const char *topic,
                                                         int32_t partition, int64_t *low,
                                                         int64_t *high, int timeout_ms) nogil
    rd_kafka_resp_err_t rd_kafka_get_watermark_offsets(rd_kafka_t *rk, const char *topic,
                                                       int32_t partition, int64_t *low,
                                                       int64_t *high) nogil
    rd_kafka_error_t *rd_kafka_consumer_close_queue(rd_kafka_t *rk,
                                                    rd_kafka_queue_t *rkqu) nogil
    int rd_kafka_consumer_closed(rd_kafka_t *rk) nogil
    char *rd_kafka_memberid(const rd_kafka_t *rk) nogil

    rd_kafka_resp_err_t rd_kafka_error_code(const rd_kafka_error_t *error) nogil
    const char *rd_kafka_error_string(const rd_kafka_error_t *error) nogil
    int rd_kafka_error_is_retriable(const rd_kafka_error_t *error) nogil
    void rd_kafka_error_destroy(rd_kafka_error_t *error) nogil


# Documented constants (rdkafka.h). Error codes are checked against confluent_kafka.KafkaError
# by the unit tests.
cdef enum:
    RD_KAFKA_PRODUCER = 0
    RD_KAFKA_CONSUMER = 1

    # Logical offsets.
    RD_KAFKA_OFFSET_BEGINNING = -2
    RD_KAFKA_OFFSET_END = -1
    RD_KAFKA_OFFSET_STORED = -1000
    RD_KAFKA_OFFSET_INVALID = -1001

    # rd_kafka_destroy_flags(): destroy a consumer without leaving its group or committing.
    RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE = 0x8

    RD_KAFKA_CONF_UNKNOWN = -2
    RD_KAFKA_CONF_INVALID = -1
    RD_KAFKA_CONF_OK = 0

    RD_KAFKA_PARTITION_UA = -1

    RD_KAFKA_MSG_F_COPY = 0x2

    RD_KAFKA_PURGE_F_QUEUE = 0x1
    RD_KAFKA_PURGE_F_INFLIGHT = 0x2
    RD_KAFKA_PURGE_F_NON_BLOCKING = 0x4

    # rd_kafka_vtype_t, the tags of rd_kafka_producev()'s argument list.
    RD_KAFKA_VTYPE_END = 0
    RD_KAFKA_VTYPE_TOPIC = 1
    RD_KAFKA_VTYPE_RKT = 2
    RD_KAFKA_VTYPE_PARTITION = 3
    RD_KAFKA_VTYPE_VALUE = 4
    RD_KAFKA_VTYPE_KEY = 5
    RD_KAFKA_VTYPE_OPAQUE = 6
    RD_KAFKA_VTYPE_MSGFLAGS = 7
    RD_KAFKA_VTYPE_TIMESTAMP = 8
    RD_KAFKA_VTYPE_HEADER = 9
    RD_KAFKA_VTYPE_HEADERS = 10

    # rd_kafka_resp_err_t values we name.
    RD_KAFKA_RESP_ERR_NO_ERROR = 0
    RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE = 10
    RD_KAFKA_RESP_ERR__MSG_TIMED_OUT = -192
    RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC = -188
    RD_KAFKA_RESP_ERR__INVALID_ARG = -186
    RD_KAFKA_RESP_ERR__QUEUE_FULL = -184
    RD_KAFKA_RESP_ERR__STATE = -172
    RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION = -190
    RD_KAFKA_RESP_ERR__PURGE_QUEUE = -152
    RD_KAFKA_RESP_ERR__PURGE_INFLIGHT = -151
    RD_KAFKA_RESP_ERR__FATAL = -150
    RD_KAFKA_RESP_ERR__PARTITION_EOF = -191
    RD_KAFKA_RESP_ERR__NO_OFFSET = -168
    RD_KAFKA_RESP_ERR__UNKNOWN_GROUP = -179
    RD_KAFKA_RESP_ERR__KEY_DESERIALIZATION = -160
    RD_KAFKA_RESP_ERR__VALUE_DESERIALIZATION = -159
    RD_KAFKA_RESP_ERR__NOENT = -156
