/* Walks the records of IPFIX data sets and writes the fields the flow table needs; indexes
 * bursts of messages (headers and sets) so the decoder's fast path stays out of Python.
 * Numpy twins: agent/ipfix/fallback.py and agent/ipfix/batch.py (same rows and error
 * codes, tested side by side). */
#include <string.h>

#include "_native.h"

#define MAX_FIELDS 512
#define MAX_SUBS 32
#define NTP_EPOCH_OFFSET 2208988800ULL

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* Inlined into the record loop, where n is a field's length: a call per field cost more
 * than the read. */
static ALWAYS_INLINE uint64_t read_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    switch (n) {
    case 1:
        return p[0];
    case 2:
        return ((uint64_t)p[0] << 8) | p[1];
    case 4:
        return ((uint64_t)p[0] << 24) | ((uint64_t)p[1] << 16) | ((uint64_t)p[2] << 8) | p[3];
    case 8: /* counters and timestamps: spelt out, so compilers make it one load and swap */
        return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) |
               ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
               ((uint64_t)p[6] << 8) | p[7];
    default:
        for (unsigned i = 0; i < n; i++)
            v = (v << 8) | p[i];
        return v;
    }
}

static ALWAYS_INLINE void write_native(uint8_t *dst, unsigned n, uint64_t v)
{
    uint8_t u8; uint16_t u16; uint32_t u32;
    switch (n) {
    case 1: u8 = (uint8_t)v; memcpy(dst, &u8, 1); break;
    case 2: u16 = (uint16_t)v; memcpy(dst, &u16, 2); break;
    case 4: u32 = (uint32_t)v; memcpy(dst, &u32, 4); break;
    default: memcpy(dst, &v, 8); break;
    }
}

static int valid_semantic(uint8_t s)
{
    return s <= 4 || s == 0xFF;
}

/* Finds the first record of each wanted sub-template inside one list field. */
static int scan_list(const uint8_t *buf, size_t pos, size_t end, uint8_t kind,
                     const uint16_t *sub_tids, const uint16_t *sub_lens, int nsub,
                     size_t *sub_off)
{
    if (pos == end)
        return IPFIX_OK;
    if (!valid_semantic(buf[pos]))
        return IPFIX_ERR_SEMANTIC;
    pos++;
    if (kind == IPFIX_FIELD_STL) {
        if (end - pos < 2)
            return IPFIX_ERR_LIST;
        uint16_t tid = (uint16_t)read_be(buf + pos, 2);
        pos += 2;
        for (int k = 0; k < nsub; k++)
            if (sub_tids[k] == tid && !sub_off[k] && end - pos >= sub_lens[k])
                sub_off[k] = pos;
        return IPFIX_OK;
    }
    while (pos < end) {
        if (end - pos < 4)
            return IPFIX_ERR_LIST;
        uint16_t tid = (uint16_t)read_be(buf + pos, 2);
        uint16_t elen = (uint16_t)read_be(buf + pos + 2, 2);
        if (elen < 4 || elen > end - pos)
            return IPFIX_ERR_LIST;
        for (int k = 0; k < nsub; k++)
            if (sub_tids[k] == tid && !sub_off[k] && elen - 4u >= sub_lens[k])
                sub_off[k] = pos + 4;
        pos += elen;
    }
    return IPFIX_OK;
}

static ALWAYS_INLINE void apply_op(const ipfix_op *op, const uint8_t *src, uint8_t *row)
{
    uint8_t *dst = row + op->dst;
    uint64_t v;
    switch (op->kind) {
    case IPFIX_OP_IPV4:
        memset(dst, 0, 10);
        dst[10] = 0xFF;
        dst[11] = 0xFF;
        memcpy(dst + 12, src, 4);
        return;
    case IPFIX_OP_IPV6:
        memcpy(dst, src, 16);
        return;
    case IPFIX_OP_SEC:
        write_native(dst, op->dst_len, read_be(src, op->len) * 1000u);
        return;
    case IPFIX_OP_NTP:
        v = read_be(src, 8);
        if (v) {
            int64_t sec = (int64_t)(v >> 32) - (int64_t)NTP_EPOCH_OFFSET;
            uint64_t frac = ((v & 0xFFFFFFFFu) * 1000u) >> 32;
            v = (uint64_t)(sec * 1000 + (int64_t)frac);
        }
        write_native(dst, op->dst_len, v);
        return;
    default:
        write_native(dst, op->dst_len, read_be(src, op->len));
    }
}

/* Decodes the records of one data set body into rows; *used gets the octets they took
 * (what is left is padding, shorter than a record). */
static int decode_set(const uint8_t *buf, size_t len, const ipfix_plan *plan, uint8_t *out,
                      size_t row_size, int max_rows, int *error, size_t *used)
{
    size_t foff[MAX_FIELDS], flen[MAX_FIELDS], sub_off[MAX_SUBS];
    const int nfields = plan->nfields, nsub = plan->nsub;
    const uint16_t *field_lens = plan->field_lens;
    size_t pos = 0;
    int rows = 0;

    *used = 0;
    *error = IPFIX_OK;
    if (nfields > MAX_FIELDS || nsub > MAX_SUBS || plan->min_length == 0) {
        *error = IPFIX_ERR_FIELDS;
        return 0;
    }
    /* compile_plan puts the operations on the record's own fields first, then those on
     * sub-records; how many of the first kind, and which fields are lists, are found
     * once rather than in every record. */
    int ntop = 0;
    while (ntop < plan->nops && plan->ops[ntop].sub < 0)
        ntop++;
    int lists[MAX_FIELDS], nlists = 0;
    for (int f = 0; f < nfields && nsub > 0; f++)
        if (plan->field_kinds[f] != IPFIX_FIELD_PLAIN)
            lists[nlists++] = f;
    while (len - pos >= plan->min_length && len - pos > 0) {
        if (rows >= max_rows) {
            *error = IPFIX_ERR_ROWS;
            return rows;
        }
        for (int f = 0; f < nfields; f++) {
            size_t n = field_lens[f];
            if (n == 0xFFFF) {
                if (pos >= len) { *error = IPFIX_ERR_VARLEN; return rows; }
                n = buf[pos++];
                if (n == 255) {
                    if (len - pos < 2) { *error = IPFIX_ERR_VARLEN; return rows; }
                    n = read_be(buf + pos, 2);
                    pos += 2;
                }
                if (n > len - pos) { *error = IPFIX_ERR_VARLEN; return rows; }
            } else if (n > len - pos) {
                *error = IPFIX_ERR_FIELD;
                return rows;
            }
            foff[f] = pos;
            flen[f] = n;
            pos += n;
        }
        memset(sub_off, 0, sizeof(sub_off[0]) * (size_t)nsub);
        for (int k = 0; k < nlists; k++) {
            const int f = lists[k];
            int rc = scan_list(buf, foff[f], foff[f] + flen[f], plan->field_kinds[f],
                               plan->sub_tids, plan->sub_lens, nsub, sub_off);
            if (rc) { *error = rc; return rows; }
        }
        uint8_t *row = out + (size_t)rows * row_size;
        memset(row, 0, row_size);
        for (int i = 0; i < ntop; i++) {
            const ipfix_op *op = &plan->ops[i];
            if (flen[op->src] == op->len)
                apply_op(op, buf + foff[op->src], row);
        }
        for (int i = ntop; i < plan->nops; i++) {
            const ipfix_op *op = &plan->ops[i];
            if (op->sub < 0) {
                if (flen[op->src] == op->len)
                    apply_op(op, buf + foff[op->src], row);
            } else if (sub_off[op->sub]) {
                apply_op(op, buf + sub_off[op->sub] + op->src, row);
            }
        }
        rows++;
        *used = pos;
    }
    return rows;
}

int ipfix_decode_flows(const uint8_t *buf, size_t len, const uint16_t *field_lens,
                       const uint8_t *field_kinds, int nfields, uint16_t min_length,
                       const ipfix_op *ops, int nops, const uint16_t *sub_tids,
                       const uint16_t *sub_lens, int nsub, uint8_t *out, size_t row_size,
                       int max_rows, int *error)
{
    ipfix_plan plan = {field_lens, field_kinds, ops, sub_tids, sub_lens,
                       nfields, nops, nsub, min_length, 0};
    size_t used;
    return decode_set(buf, len, &plan, out, row_size, max_rows, error, &used);
}

int ipfix_decode_jobs(const uint8_t *buf, ipfix_job *jobs, int njobs,
                      const ipfix_plan *const *plans, uint8_t *out, size_t row_size,
                      int max_rows, size_t domain_off, size_t version_off)
{
    int total = 0;

    for (int j = 0; j < njobs; j++) {
        ipfix_job *job = &jobs[j];
        const ipfix_plan *plan = plans[job->plan];
        uint8_t *first = out + (size_t)total * row_size;
        int room = max_rows - total;
        int limit = plan->min_length ? (int)(job->len / plan->min_length) : 0;
        int error = IPFIX_OK;
        size_t used;

        if (limit > room) {
            job->rows = 0;
            job->error = IPFIX_ERR_ROWS;
            continue;
        }
        int rows = limit ? decode_set(buf + job->off, job->len, plan, first, row_size, limit,
                                      &error, &used)
                         : 0;
        for (int r = 0; r < rows; r++) {
            uint8_t *row = first + (size_t)r * row_size;
            memcpy(row + domain_off, &job->domain, 4);
            if (plan->ip_version >= 0 && !error)
                row[version_off] = (uint8_t)plan->ip_version;
        }
        job->rows = rows;
        job->error = error;
        total += rows;
    }
    return total;
}

/* Checks one message's header and walks its sets. A message is "simple" when its header
 * is valid, its length is the datagram's, its sets fit exactly, and it holds (options)
 * template sets first and data sets after them, nothing else: those go on the fast path. */
static int index_message(const uint8_t *buf, uint32_t off, uint32_t len, ipfix_msg *msg,
                         ipfix_set *sets, int nsets, int max_sets)
{
    const uint8_t *m = buf + off;
    uint32_t pos = 16, length;
    int data_seen = 0;

    memset(msg, 0, sizeof(*msg));
    if (len < 16 || read_be(m, 2) != 10) {
        msg->status = IPFIX_MSG_BAD_HEADER;
        return nsets;
    }
    length = (uint32_t)read_be(m + 2, 2);
    msg->export_time = (uint32_t)read_be(m + 4, 4);
    msg->sequence = (uint32_t)read_be(m + 8, 4);
    msg->domain = (uint32_t)read_be(m + 12, 4);
    if (length < 16 || length > len) {
        msg->status = IPFIX_MSG_BAD_HEADER;
        return nsets;
    }
    msg->status = IPFIX_MSG_OTHER;
    if (length != len)
        return nsets;
    msg->first_set = (uint32_t)nsets;
    msg->tset_off = off + 16;
    while (pos < length) {
        if (length - pos < 4)
            return nsets;
        uint32_t set_id = (uint32_t)read_be(m + pos, 2);
        uint16_t set_len = (uint16_t)read_be(m + pos + 2, 2);
        if (set_len < 4 || set_len > length - pos)
            return nsets;
        if (set_id == 2 || set_id == 3) {
            if (data_seen)
                return nsets;
            msg->tset_len += set_len;
        } else if (set_id >= 256) {
            if (nsets + (int)msg->nsets >= max_sets)
                return nsets;
            ipfix_set *s = &sets[nsets + msg->nsets++];
            s->off = off + pos + 4;
            s->len = set_len - 4u;
            s->set_id = set_id;
            data_seen = 1;
        } else {
            return nsets;
        }
        pos += set_len;
    }
    msg->status = IPFIX_MSG_SIMPLE;
    return nsets + (int)msg->nsets;
}

/* True when two simple messages have the same domain, template sets and data set ids. */
static int same_shape(const uint8_t *buf, const ipfix_msg *a, const ipfix_msg *b,
                      const ipfix_set *sets)
{
    if (a->status != IPFIX_MSG_SIMPLE || b->status != IPFIX_MSG_SIMPLE)
        return 0;
    if (a->domain != b->domain || a->tset_len != b->tset_len || a->nsets != b->nsets)
        return 0;
    if (memcmp(buf + a->tset_off, buf + b->tset_off, a->tset_len) != 0)
        return 0;
    for (uint32_t k = 0; k < a->nsets; k++)
        if (sets[a->first_set + k].set_id != sets[b->first_set + k].set_id)
            return 0;
    return 1;
}

int ipfix_index_messages(const uint8_t *buf, const uint32_t *offs, const uint32_t *lens, int n,
                         const uint32_t *slots, int32_t *last, ipfix_msg *msgs,
                         ipfix_set *sets, int max_sets)
{
    int nsets = 0;

    for (int i = 0; i < n; i++) {
        ipfix_msg *msg = &msgs[i];
        int used = index_message(buf, offs[i], lens[i], msg, sets, nsets, max_sets);
        if (msg->status != IPFIX_MSG_SIMPLE) {
            msg->nsets = 0;
            msg->tset_len = 0;
        }
        nsets = used;
        msg->ref = last[slots[i]];
        msg->same = msg->ref >= 0 && same_shape(buf, msg, &msgs[msg->ref], sets);
        last[slots[i]] = i;
    }
    return nsets;
}

/* The steady state of one UDP exporter: every message of the burst is a valid header of
 * the given domain, continuing the sequence numbers, then exactly the given template set
 * octets (often none), then one data set of the given flow template, decoded without
 * error and with nothing but zero padding after its last record. Returns the rows
 * (counts[i] per message, *next the sequence number expected after the burst), or -1
 * at the first message that is not so shaped: the caller then decodes the burst the
 * general way, as nothing here changes any state. */
int ipfix_decode_steady(const uint8_t *buf, const uint32_t *lens, int n,
                        const ipfix_steady *steady, const ipfix_plan *plan, uint8_t *out,
                        size_t row_size, int max_rows, size_t domain_off, size_t version_off,
                        int64_t *counts, uint32_t *next)
{
    const uint32_t head = 16 + steady->tset_len;
    uint32_t sequence = steady->sequence;
    size_t at = 0;
    int total = 0;

    if (plan->min_length == 0)
        return -1;
    for (int i = 0; i < n; at += lens[i++]) {
        const uint8_t *m = buf + at;
        const uint32_t len = lens[i];
        if (len < head + 4 || read_be(m, 2) != 10 || read_be(m + 2, 2) != len)
            return -1;
        if (read_be(m + 8, 4) != sequence || read_be(m + 12, 4) != steady->domain)
            return -1;
        if (steady->tset_len && memcmp(m + 16, steady->tset, steady->tset_len) != 0)
            return -1;
        if (read_be(m + head, 2) != steady->set_id || read_be(m + head + 2, 2) != len - head)
            return -1;

        const uint8_t *body = m + head + 4;
        const size_t size = len - head - 4;
        const int limit = (int)(size / plan->min_length);
        uint8_t *first = out + (size_t)total * row_size;
        int error = IPFIX_OK, rows = 0;
        size_t used = 0;
        if (limit > max_rows - total)
            return -1;
        if (limit)
            rows = decode_set(body, size, plan, first, row_size, limit, &error, &used);
        if (error != IPFIX_OK)
            return -1;
        for (size_t k = used; k < size; k++)
            if (body[k])
                return -1;

        for (int r = 0; r < rows; r++) {
            uint8_t *row = first + (size_t)r * row_size;
            memcpy(row + domain_off, &steady->domain, 4);
            if (plan->ip_version >= 0)
                row[version_off] = (uint8_t)plan->ip_version;
        }
        counts[i] = rows;
        total += rows;
        sequence += (uint32_t)rows;
    }
    *next = sequence;
    return total;
}
