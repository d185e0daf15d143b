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

int ipfix_decode_flows(const uint8_t *buf, size_t len, const uint16_t *field_lens,
                       const uint8_t *field_kinds, int nfields, uint16_t min_length,
                       const ipfix_op *ops, int nops, const uint16_t *sub_tids,
                       const uint16_t *sub_lens, int nsub, uint8_t *out, size_t row_size,
                       int max_rows, int *error);
