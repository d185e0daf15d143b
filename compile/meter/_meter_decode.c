/* Packet decoding for the flow meter, as YAF's decoder does it (see decode.py). */
#include "_meter.h"

#include <string.h>

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint64_t mac48(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 6; i++) v = v << 8 | p[i];
    return v;
}

static const uint8_t V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int meter_decode(const uint8_t *pkt, size_t caplen, uint16_t linktype, struct packet *out) {
    if (linktype != 1) return UNSUPPORTED_LINKTYPE;
    if (caplen < 14) return TRUNCATED_L2;
    size_t end = caplen, pos = 14;
    out->dmac = mac48(pkt);
    out->smac = mac48(pkt + 6);
    uint16_t ethertype = be16(pkt + 12), vlan = 0;
    while (ethertype == 0x8100) {
        if (pos + 4 > end) return TRUNCATED_L2;
        vlan = be16(pkt + pos) & 0x0FFF;
        ethertype = be16(pkt + pos + 2);
        pos += 4;
    }
    struct key *k = &out->key;
    memset(k, 0, sizeof(*k));
    out->is_frag = 0;
    k->vlan = vlan;
    size_t ip_start = pos;
    uint32_t iplen;
    uint8_t proto;
    if (ethertype == 0x0800) {
        if (pos + 20 > end) return TRUNCATED_IP;
        uint8_t first = pkt[pos];
        size_t header = (size_t)(first & 0x0F) * 4;
        if (first >> 4 != 4 || header < 20) return MALFORMED_IP;
        if (pos + header > end) return TRUNCATED_IP;
        iplen = be16(pkt + pos + 2);
        if (iplen < header) return MALFORMED_IP;
        uint16_t fragment = be16(pkt + pos + 6);
        out->is_frag = (fragment & 0x3FFF) != 0;
        if (out->is_frag) {
            out->ipid = be16(pkt + pos + 4);
            out->frag_offset = (uint16_t)((fragment & 0x1FFF) * 8);
            out->more = (fragment & 0x2000) != 0;
            out->iphlen = (uint16_t)header;
        }
        proto = pkt[pos + 9];
        memcpy(k->src, V4_MAPPED, 12);
        memcpy(k->src + 12, pkt + pos + 12, 4);
        memcpy(k->dst, V4_MAPPED, 12);
        memcpy(k->dst + 12, pkt + pos + 16, 4);
        k->version = 4;
        if (pos + iplen < end) end = pos + iplen;
        pos += header;
    } else if (ethertype == 0x86DD) {
        if (pos + 40 > end) return TRUNCATED_IP;
        if (pkt[pos] >> 4 != 6) return MALFORMED_IP;
        iplen = (uint32_t)be16(pkt + pos + 4) + 40;
        proto = pkt[pos + 6];
        memcpy(k->src, pkt + pos + 8, 16);
        memcpy(k->dst, pkt + pos + 24, 16);
        k->version = 6;
        if (pos + iplen < end) end = pos + iplen;
        pos += 40;
        while (proto == 0 || proto == 43 || proto == 60) {
            if (pos + 2 > end) return TRUNCATED_IP;
            size_t length = (size_t)pkt[pos + 1] * 8 + 8;
            if (pos + length > end) return TRUNCATED_IP;
            proto = pkt[pos];
            pos += length;
        }
        if (proto == 44) return IPV6_FRAGMENT;
        if (proto == 59) return NO_NEXT_HEADER;
    } else {
        return NOT_IP;
    }

    k->proto = proto;
    out->flags = 0;
    out->iplen = iplen;
    if (out->is_frag && out->frag_offset) {
        out->datalen = 0;
        out->l4hlen = 0;
        return METERED;
    }
    size_t l4_start = pos;
    if (proto == 6) {
        if (pos + 20 > end) return TRUNCATED_L4;
        size_t header = (size_t)(pkt[pos + 12] >> 4) * 4;
        if (header < 20 || pos + header > end) return TRUNCATED_L4;
        k->sp = be16(pkt + pos);
        k->dp = be16(pkt + pos + 2);
        out->flags = pkt[pos + 13];
        pos += header;
    } else if (proto == 17) {
        if (pos + 8 > end) return TRUNCATED_L4;
        k->sp = be16(pkt + pos);
        k->dp = be16(pkt + pos + 2);
        pos += 8;
    } else if (proto == 1 || proto == 58) {
        if (pos + 8 > end) return TRUNCATED_L4;
        k->dp = (uint16_t)(pkt[pos] << 8 | pkt[pos + 1]);
        pos += 8;
    }
    out->datalen = iplen - (uint32_t)(pos - ip_start);
    out->l4hlen = (uint16_t)(pos - l4_start);
    return METERED;
}
