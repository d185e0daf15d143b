/* Decoding of IPFIX data sets whose records have a variable length (RFC 7011 7,
 * RFC 6313 lists) straight into rows of the agent's flow table. */
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int16_t sub;      /* -1: a field of the record; k >= 0: a field of sub-record kind k */
    uint16_t src;     /* field index (sub == -1) or octet offset inside the sub-record */
    uint16_t len;     /* octets read at the source */
    uint16_t dst;     /* octet offset in the output row */
    uint8_t dst_len;  /* octets written: 1, 2, 4, 8 or 16 */
    uint8_t kind;     /* IPFIX_OP_* */
} ipfix_op;

enum { IPFIX_OP_UINT = 0, IPFIX_OP_IPV4 = 1, IPFIX_OP_IPV6 = 2, IPFIX_OP_SEC = 3,
       IPFIX_OP_NTP = 4 };

enum { IPFIX_OK = 0, IPFIX_ERR_VARLEN = 1, IPFIX_ERR_FIELD = 2, IPFIX_ERR_SEMANTIC = 3,
       IPFIX_ERR_LIST = 4, IPFIX_ERR_ROWS = 5, IPFIX_ERR_FIELDS = 6 };

enum { IPFIX_FIELD_PLAIN = 0, IPFIX_FIELD_STL = 1, IPFIX_FIELD_STML = 2 };

/* A compiled flow plan (agent/ipfix/flowplan.py FlowPlan). */
typedef struct {
    const uint16_t *field_lens;
    const uint8_t *field_kinds;
    const ipfix_op *ops;
    const uint16_t *sub_tids;
    const uint16_t *sub_lens;
    int32_t nfields, nops, nsub;
    uint32_t min_length;
    int8_t ip_version;  /* written to every row of a set decoded without error; -1: not */
} ipfix_plan;

/* One data set of a burst: its body in the burst buffer and the plan that decodes it. */
typedef struct {
    uint32_t off, len, domain;
    uint16_t plan;
    uint16_t pad;
    int32_t rows;   /* out */
    int32_t error;  /* out: IPFIX_OK or IPFIX_ERR_* */
} ipfix_job;

enum { IPFIX_MSG_SIMPLE = 0, IPFIX_MSG_BAD_HEADER = 1, IPFIX_MSG_OTHER = 2 };

/* One message of a burst: header fields, its leading template sets, its data sets. */
typedef struct {
    uint32_t export_time, sequence, domain;
    uint32_t tset_off, tset_len;  /* octets of the template sets (offset in the burst) */
    uint32_t first_set, nsets;    /* its data sets in the set table */
    uint32_t status;              /* IPFIX_MSG_* */
    int32_t ref;                  /* the session's message before this one, or -1 */
    uint32_t same;                /* 1: simple, and shaped as message ref (same domain,
                                     template set octets and data set ids) */
} ipfix_msg;

typedef struct {
    uint32_t off, len;  /* the set's body in the burst buffer */
    uint32_t set_id;
} ipfix_set;

/* What a burst of one exporter in its steady state must match (ipfix_decode_steady). */
typedef struct {
    uint32_t domain, sequence, set_id, tset_len;
    const uint8_t *tset;  /* the template set octets every message starts with */
} ipfix_steady;

int ipfix_decode_flows(const uint8_t *buf, size_t len, const uint16_t *field_lens,
                       const uint8_t *field_kinds, int nfields, uint16_t min_length,
                       const ipfix_op *ops, int nops, const uint16_t *sub_tids,
                       const uint16_t *sub_lens, int nsub, uint8_t *out, size_t row_size,
                       int max_rows, int *error);

int ipfix_decode_jobs(const uint8_t *buf, ipfix_job *jobs, int njobs,
                      const ipfix_plan *const *plans, uint8_t *out, size_t row_size,
                      int max_rows, size_t domain_off, size_t version_off);

int ipfix_index_messages(const uint8_t *buf, const uint32_t *offs, const uint32_t *lens, int n,
                         const uint32_t *slots, int32_t *last, ipfix_msg *msgs,
                         ipfix_set *sets, int max_sets);

int ipfix_decode_steady(const uint8_t *buf, const uint32_t *lens, int n,
                        const ipfix_steady *steady, const ipfix_plan *plan, uint8_t *out,
                        size_t row_size, int max_rows, size_t domain_off, size_t version_off,
                        int64_t *counts, uint32_t *next);
