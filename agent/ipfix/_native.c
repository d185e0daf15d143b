/* Walks the records of one IPFIX data set and writes the fields the flow table needs.
 * Numpy twin: agent/ipfix/fallback.py (same rows and error codes, tested side by side). */
#include <string.h>

#include "_native.h"

#define MAX_FIELDS 512
#define MAX_SUBS 32
#define NTP_EPOCH_OFFSET 2208988800ULL

static uint64_t read_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    switch (n) {
    case 1:
        return p[0];
    case 2:
        return ((uint64_t)p[0] << 8) | p[1];
    case 4:
        return ((uint64_t)p[0] << 24) | ((uint64_t)p[1] << 16) | ((uint64_t)p[2] << 8) | p[3];
    default:
        for (unsigned i = 0; i < n; i++)
            v = (v << 8) | p[i];
        return v;
    }
}

static void write_native(uint8_t *dst, unsigned n, uint64_t v)
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

static void apply_op(const ipfix_op *op, const uint8_t *src, uint8_t *row)
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

int ipfix_decode_flows(const uint8_t *buf, size_t len, const uint16_t *field_lens,
                       const uint8_t *field_kinds, int nfields, uint16_t min_length,
                       const ipfix_op *ops, int nops, const uint16_t *sub_tids,
                       const uint16_t *sub_lens, int nsub, uint8_t *out, size_t row_size,
                       int max_rows, int *error)
{
    size_t foff[MAX_FIELDS], flen[MAX_FIELDS], sub_off[MAX_SUBS];
    size_t pos = 0;
    int rows = 0;

    *error = IPFIX_OK;
    if (nfields > MAX_FIELDS || nsub > MAX_SUBS || min_length == 0) {
        *error = IPFIX_ERR_FIELDS;
        return 0;
    }
    while (len - pos >= min_length && len - pos > 0) {
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
        for (int f = 0; f < nfields && nsub > 0; f++) {
            if (field_kinds[f] == IPFIX_FIELD_PLAIN)
                continue;
            int rc = scan_list(buf, foff[f], foff[f] + flen[f], field_kinds[f], sub_tids,
                               sub_lens, nsub, sub_off);
            if (rc) { *error = rc; return rows; }
        }
        uint8_t *row = out + (size_t)rows * row_size;
        memset(row, 0, row_size);
        for (int i = 0; i < nops; i++) {
            const ipfix_op *op = &ops[i];
            const uint8_t *src;
            if (op->sub < 0) {
                if (flen[op->src] != op->len)
                    continue;
                src = buf + foff[op->src];
            } else {
                if (!sub_off[op->sub])
                    continue;
                src = buf + sub_off[op->sub] + op->src;
            }
            apply_op(op, src, row);
        }
        rows++;
    }
    return rows;
}
