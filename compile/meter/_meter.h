/* The flow meter's C engine: capture scanning, packet decoding and YAF's biflow table.
 * Every rule here has its Python twin (capture.py, decode.py, fragments.py, table.py); the
 * tests hold the two engines to identical output. */
#ifndef IOTWATCH_METER_H
#define IOTWATCH_METER_H

#include <stddef.h>
#include <stdint.h>

#define METER_KEPT 10
#define METER_N_COUNTERS 15

struct meter_dir {
    uint64_t pkt, oct, payoct, aitime;
    uint32_t nonempty, small, large, first, maxsize;
    uint32_t ia[METER_KEPT];
    uint16_t psize[METER_KEPT];
};

struct meter_flow {
    int64_t start_ns, end_ns;
    uint64_t smac, dmac;
    uint8_t src[16], dst[16];
    uint16_t sp, dp, vlan;
    uint8_t proto, version, reason, pktdir;
    uint8_t pad[6];
    struct meter_dir fwd, rev;
};

typedef struct meter meter_t;

/* Scanner outcomes (capture.py's SCAN_*). */
enum { SCAN_MORE = 0, SCAN_END = 1, SCAN_TRUNCATED = 2, SCAN_CORRUPT = 3, SCAN_BLOCK = 4 };

long meter_scan_pcap(const uint8_t *buf, size_t len, size_t *pos, int big_endian, int nanos,
                     uint16_t linktype, long max, int64_t *ts_ns, int64_t *offset,
                     uint32_t *caplen, uint16_t *linktypes, int *status);
long meter_scan_pcapng(const uint8_t *buf, size_t len, size_t *pos, int big_endian,
                       const uint16_t *if_linktype, const int8_t *if_tsexp, int n_if, long max,
                       int64_t *ts_ns, int64_t *offset, uint32_t *caplen, uint16_t *linktypes,
                       int *status);

meter_t *meter_new(int64_t idle_ns, int64_t active_ns);
void meter_free(meter_t *m);
int meter_feed(meter_t *m, const uint8_t *buf, size_t n, const int64_t *ts_ns,
               const int64_t *offset, const uint32_t *caplen, const uint16_t *linktypes);
int meter_finish(meter_t *m);
size_t meter_pending(const meter_t *m);
size_t meter_drain(meter_t *m, struct meter_flow *out, size_t max);
void meter_counters(const meter_t *m, uint64_t *out);

/* ---- shared by the C files only (not part of the cffi interface) ---- */

/* Counter slots: decode.py's DROP_REASONS, out_of_sequence, then fragments.py's
 * FRAGMENT_COUNTERS. */
enum {
    METERED = 0, TRUNCATED_L2, TRUNCATED_IP, TRUNCATED_L4, MALFORMED_IP, NOT_IP,
    IPV6_FRAGMENT, UNSUPPORTED_LINKTYPE, NO_NEXT_HEADER, OUT_OF_SEQUENCE,
    FRAGMENTS, FRAGMENT_OUT_OF_SEQUENCE, REASSEMBLED, REASSEMBLED_OUT_OF_SEQUENCE,
    FRAGMENTS_UNASSEMBLED
};

/* A flow key: 40 octets, no padding, compared and hashed as bytes. */
struct key {
    uint8_t src[16], dst[16];
    uint16_t sp, dp, vlan;
    uint8_t proto, version;
};

struct packet {
    struct key key;
    uint32_t iplen, datalen;
    uint8_t flags;
    uint64_t smac, dmac;
    /* IPv4 fragments: is_frag, then id, offset in octets, more-fragments flag, header
     * lengths (transport: 0 past the first fragment). */
    uint8_t is_frag, more;
    uint16_t ipid, frag_offset, iphlen, l4hlen;
};

struct datagram;

/* IPv4 fragments being reassembled (fragments.py). */
struct fragtab {
    struct datagram *items;
    size_t n, cap;
    int64_t ctime, prune_time;
    int has_ctime, has_prune;
};

/* METERED and *out filled, or the reason the packet cannot be metered. */
int meter_decode(const uint8_t *pkt, size_t caplen, uint16_t linktype, struct packet *out);

/* Take one fragment: 1 with *out the completed datagram, 0 if none yet, -1 if out of
 * memory. Counters are the meter's. */
int meter_frag_add(struct fragtab *ft, int64_t t, const struct packet *p, struct packet *out,
                   uint64_t *counters);
void meter_frag_finish(struct fragtab *ft, uint64_t *counters);
void meter_frag_free(struct fragtab *ft);

#endif
