/* See _kernels.h. Each function gives what its numpy twin gives; the tests run both on
 * the same tables (tests/test_features.py, tests/test_bundle.py, tests/test_inventory.py,
 * tests/test_trust.py, tests/test_homes.py). */
#include <math.h>
#include <string.h>

#include "_kernels.h"

enum { PRIVATE = 1, NEVER = 2, MAYBE = 4 };

/* Eight octets as a little-endian word on any host, as features.py reads addresses
 * ("<u8"); compilers make it one load on little-endian CPUs. */
static uint64_t read_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24) | ((uint64_t)p[4] << 32) | ((uint64_t)p[5] << 40) |
           ((uint64_t)p[6] << 48) | ((uint64_t)p[7] << 56);
}

/* The address class bits of one 16-octet address (IPv4 mapped into IPv6), as
 * features._local_ends finds them: the first two octets pick the class, and the
 * "maybe" keys are settled on the whole address (0.0.0.0, 255.255.255.255, ::/120). */
static unsigned address_bits(const uint8_t *a, const uint8_t *classes)
{
    const uint64_t hi = read_le64(a), lo = read_le64(a + 8);
    const int is_v4 = hi == 0 && (lo & 0xFFFFFFFFull) == 0xFFFF0000ull;
    const uint32_t v4 = (uint32_t)(lo >> 32);
    const unsigned key = is_v4 ? ((v4 & 0xFFFFu) | 65536u) : (unsigned)(hi & 0xFFFFu);
    unsigned bits = classes[key];

    if (bits & MAYBE) {
        int special = is_v4 ? (v4 == 0 || v4 == 0xFFFFFFFFu)
                            : (hi == 0 && (lo & 0x00FFFFFFFFFFFFFFull) == 0);
        bits = (bits & ~(unsigned)NEVER) | (special ? NEVER : 0);
    }
    return bits;
}

int64_t iw_remote(const uint8_t *rows, int64_t n, const iw_layout *layout, uint8_t *remote)
{
    int64_t count = 0;

    for (int64_t i = 0; i < n; i++) {
        const uint8_t *row = rows + i * (int64_t)layout->row_size;
        unsigned s = address_bits(row + layout->source_address, layout->address_class);
        unsigned d = address_bits(row + layout->destination_address, layout->address_class);
        int local = ((s & d) & PRIVATE) || ((s | d) & NEVER);
        remote[i] = (uint8_t)!local;
        count += !local;
    }
    return count;
}

static uint64_t read_unsigned(const uint8_t *p, unsigned width)
{
    uint8_t v8;
    uint16_t v16;
    uint32_t v32;
    uint64_t v64;

    switch (width) {
    case 1:
        memcpy(&v8, p, 1);
        return v8;
    case 2:
        memcpy(&v16, p, 2);
        return v16;
    case 4:
        memcpy(&v32, p, 4);
        return v32;
    default:
        memcpy(&v64, p, 8);
        return v64;
    }
}

void iw_features(const uint8_t *rows, int64_t n, const iw_layout *layout, float *out)
{
    const int32_t n_activity = layout->n_activity, n_flags = layout->n_flags;
    const int32_t width = n_activity + n_flags;

    for (int64_t i = 0; i < n; i++) {
        const uint8_t *row = rows + i * (int64_t)layout->row_size;
        float *x = out + i * width;
        uint16_t sport, dport;

        /* Widened to double first, then rounded once to float, as numpy's two casts. */
        for (int32_t f = 0; f < n_activity; f++) {
            uint64_t v = read_unsigned(row + layout->activity_offset[f],
                                       layout->activity_width[f]);
            x[f] = (float)(double)v;
        }
        memcpy(&sport, row + layout->source_port, 2);
        memcpy(&dport, row + layout->destination_port, 2);
        unsigned kind = (uint8_t)((layout->port_services[sport] | layout->port_services[dport])
                                  + layout->protocol_kind[row[layout->protocol]]);
        memcpy(x + n_activity, layout->flag_rows + kind * (unsigned)n_flags,
               sizeof(float) * (size_t)n_flags);
    }
}

int64_t iw_accept(const double *proba, int64_t n, int32_t n_classes, const double *low,
                  const double *high, int32_t *label, double *confidence, uint8_t *accepted)
{
    int64_t count = 0;

    for (int64_t i = 0; i < n; i++) {
        const double *p = proba + i * n_classes;
        int32_t best = 0;
        double top = p[0];
        int nan = isnan(top);

        /* The first largest (a strict > keeps the first of equals), without a branch
         * that depends on the data; then, as numpy's argmax, the first NaN if any. */
        for (int32_t c = 1; c < n_classes; c++) {
            const double v = p[c];
            nan |= isnan(v);
            best = v > top ? c : best;
            top = v > top ? v : top;
        }
        if (nan)
            for (best = 0; !isnan(p[best]); best++)
                ;
        const double value = p[best];
        label[i] = best;
        confidence[i] = value;
        accepted[i] = (uint8_t)(value >= low[best] && value <= high[best]);
        count += accepted[i];
    }
    return count;
}

/* True when every (slot, class) of the batch indexes a (n_slots x n_classes) table. */
static int in_tables(const int32_t *slot, const int32_t *label, int64_t n, int32_t n_classes,
                     int64_t n_slots)
{
    for (int64_t i = 0; i < n; i++)
        if (slot[i] < 0 || slot[i] >= n_slots || label[i] < 0 || label[i] >= n_classes)
            return 0;
    return 1;
}

/* Detections of one batch, in batch order: a (home, type) pair not in the inventory when
 * the batch began takes the earliest start of its flows, counts its flows up to and
 * including the first accepted one, and is detected at that flow's end. While the batch
 * runs, a pair detected in it keeps its hit_flow negated (-h - 1) to tell it from pairs
 * detected before; the marks are undone at the end. Returns the number of new pairs (their
 * keys in new_keys), or -1, with nothing changed, if a slot or class is out of the tables. */
int64_t iw_inventory(const int32_t *slot, const int32_t *label, const uint8_t *accepted,
                     const double *start, const double *end, int64_t n, int32_t n_classes,
                     int64_t n_slots, double *first_seen, double *detected, int64_t *hit_flow,
                     int64_t *new_keys)
{
    int64_t found = 0;

    if (!in_tables(slot, label, n, n_classes, n_slots))
        return -1;
    for (int64_t i = 0; i < n; i++) {
        const int64_t k = (int64_t)slot[i] * n_classes + label[i];
        if (!isnan(detected[k])) {
            if (hit_flow[k] < 0)
                first_seen[k] = fmin(first_seen[k], start[i]);
            continue;
        }
        first_seen[k] = fmin(first_seen[k], start[i]);
        hit_flow[k] += 1;
        if (accepted[i]) {
            detected[k] = end[i];
            hit_flow[k] = -hit_flow[k] - 1;
            new_keys[found++] = k;
        }
    }
    for (int64_t j = 0; j < found; j++)
        hit_flow[new_keys[j]] = -hit_flow[new_keys[j]] - 1;
    return found;
}

/* Trust.add: one count per flow in (slot, class, accepted) of the window's table; -1,
 * with nothing counted, if a slot or class is out of the table. */
int64_t iw_count(const int32_t *slot, const int32_t *label, const uint8_t *accepted, int64_t n,
                 int32_t n_classes, int64_t n_slots, int64_t *counts)
{
    if (!in_tables(slot, label, n, n_classes, n_slots))
        return -1;
    for (int64_t i = 0; i < n; i++)
        counts[((int64_t)slot[i] * n_classes + label[i]) * 2 + (accepted[i] != 0)] += 1;
    return n;
}

/* homes._Index.find: linear probing from each key's multiplicative hash until the key or
 * an empty place (the table is at most half full and never loses keys). */
void iw_find(const uint64_t *keys, int64_t n, const uint64_t *table_keys,
             const int32_t *table_slots, uint64_t size, uint32_t shift, uint64_t multiplier,
             int32_t *out)
{
    const uint64_t last = size - 1;

    for (int64_t i = 0; i < n; i++) {
        uint64_t at = (keys[i] * multiplier) >> shift;
        int32_t found = -1;
        while (table_slots[at] >= 0) {
            if (table_keys[at] == keys[i]) {
                found = table_slots[at];
                break;
            }
            at = (at + 1) & last;
        }
        out[i] = found;
    }
}
