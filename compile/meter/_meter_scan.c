/* Capture scanning for the flow meter: pcap records and pcapng packet blocks as index
 * arrays (see capture.py, whose scanners these mirror). */
#include "_meter.h"

#define MAX_RECORD 262144u

static uint32_t rd32(const uint8_t *p, int big) {
    return big ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
               : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}

static uint16_t rd16(const uint8_t *p, int big) {
    return big ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

long meter_scan_pcap(const uint8_t *buf, size_t len, size_t *pos, int big_endian, int nanos,
                     uint16_t linktype, long max, int64_t *ts_ns, int64_t *offset,
                     uint32_t *caplen, uint16_t *linktypes, int *status) {
    size_t p = *pos;
    long n = 0;
    int64_t scale = nanos ? 1 : 1000;
    *status = SCAN_MORE;
    while (n < max) {
        if (p == len) { *status = SCAN_END; break; }
        if (p + 16 > len) { *status = SCAN_TRUNCATED; break; }
        uint32_t incl = rd32(buf + p + 8, big_endian);
        if (incl > MAX_RECORD) { *status = SCAN_CORRUPT; break; }
        if (p + 16 + incl > len) { *status = SCAN_TRUNCATED; break; }
        ts_ns[n] = (int64_t)rd32(buf + p, big_endian) * 1000000000LL
                   + (int64_t)rd32(buf + p + 4, big_endian) * scale;
        offset[n] = (int64_t)(p + 16);
        caplen[n] = incl;
        linktypes[n] = linktype;
        n++;
        p += 16 + incl;
    }
    *pos = p;
    return n;
}

static int64_t to_ns(uint64_t ts, int8_t tsexp) {
    if (tsexp >= 0) {
        uint64_t f = 1;
        if (tsexp >= 9) {
            if (tsexp - 9 > 19) return 0;
            for (int i = 9; i < tsexp; i++) f *= 10;
            return (int64_t)(ts / f);
        }
        for (int i = tsexp; i < 9; i++) f *= 10;
        return (int64_t)(ts * f);
    }
    int shift = -tsexp;
    unsigned __int128 low = (unsigned __int128)(ts & ((1ULL << shift) - 1)) * 1000000000u;
    return (int64_t)((ts >> shift) * 1000000000ULL + (uint64_t)(low >> shift));
}

long meter_scan_pcapng(const uint8_t *buf, size_t len, size_t *pos, int big_endian,
                       const uint16_t *if_linktype, const int8_t *if_tsexp, int n_if, long max,
                       int64_t *ts_ns, int64_t *offset, uint32_t *caplen, uint16_t *linktypes,
                       int *status) {
    size_t p = *pos;
    long n = 0;
    *status = SCAN_MORE;
    while (n < max) {
        if (p == len) { *status = SCAN_END; break; }
        if (p + 12 > len) { *status = SCAN_TRUNCATED; break; }
        uint32_t kind = rd32(buf + p, big_endian), length = rd32(buf + p + 4, big_endian);
        if (kind != 6 && kind != 2) { *status = SCAN_BLOCK; break; }
        if (length < 32 || length % 4 || length > MAX_RECORD + 64) {
            *status = SCAN_CORRUPT;
            break;
        }
        if (p + length > len) { *status = SCAN_TRUNCATED; break; }
        uint32_t iface, high, low, incl;
        const uint8_t *b = buf + p + 8;
        if (kind == 6) {
            iface = rd32(b, big_endian);
            high = rd32(b + 4, big_endian);
            low = rd32(b + 8, big_endian);
            incl = rd32(b + 12, big_endian);
        } else {
            iface = rd16(b, big_endian);
            high = rd32(b + 4, big_endian);
            low = rd32(b + 8, big_endian);
            incl = rd32(b + 12, big_endian);
        }
        if ((int64_t)iface >= n_if || (uint64_t)28 + incl + 4 > length) {
            *status = SCAN_CORRUPT;
            break;
        }
        ts_ns[n] = to_ns((uint64_t)high << 32 | low, if_tsexp[iface]);
        offset[n] = (int64_t)(p + 28);
        caplen[n] = incl;
        linktypes[n] = if_linktype[iface];
        n++;
        p += length;
    }
    *pos = p;
    return n;
}
