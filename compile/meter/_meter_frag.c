/* IPv4 fragment reassembly for the flow meter, as YAF's fragment table does it (see
 * fragments.py for the rules). Fragmented traffic is rare, so datagrams in progress sit
 * in a plain array searched linearly; datagrams idle for 30 s are pruned every 5 s. */
#include "_meter.h"

#include <stdlib.h>
#include <string.h>

#define FRAGMENT_TIMEOUT_NS 30000000000LL
#define PRUNE_DELAY_NS 5000000000LL

struct piece {
    uint32_t offset, length;
};

struct datagram {
    uint8_t src[16], dst[16];
    uint16_t ipid, sp, dp, vlan;
    uint8_t proto, flags, first, last;
    uint64_t smac, dmac;
    int64_t touched;
    struct piece *pieces;
    size_t n_pieces, cap_pieces;
};

static void drop(struct fragtab *ft, size_t i) {
    free(ft->items[i].pieces);
    ft->items[i] = ft->items[--ft->n];
}

static struct datagram *find_or_add(struct fragtab *ft, const struct packet *p, int64_t t) {
    for (size_t i = 0; i < ft->n; i++) {
        struct datagram *d = &ft->items[i];
        if (d->ipid == p->ipid && d->proto == p->key.proto
            && memcmp(d->src, p->key.src, 16) == 0 && memcmp(d->dst, p->key.dst, 16) == 0) {
            d->touched = t;
            return d;
        }
    }
    if (ft->n == ft->cap) {
        size_t cap = ft->cap ? ft->cap * 2 : 16;
        struct datagram *items = realloc(ft->items, cap * sizeof(*items));
        if (!items) return NULL;
        ft->items = items;
        ft->cap = cap;
    }
    struct datagram *d = &ft->items[ft->n++];
    memset(d, 0, sizeof(*d));
    memcpy(d->src, p->key.src, 16);
    memcpy(d->dst, p->key.dst, 16);
    d->ipid = p->ipid;
    d->proto = p->key.proto;
    d->vlan = p->key.vlan;
    d->touched = t;
    return d;
}

/* Covered length when first and last are in and the pieces, in offset order, leave no
 * gap; -1 otherwise. Sorting is stable, as Python's. */
static int64_t covered(struct datagram *d) {
    if (!d->first || !d->last) return -1;
    for (size_t i = 1; i < d->n_pieces; i++) {
        struct piece key = d->pieces[i];
        size_t j = i;
        while (j > 0 && d->pieces[j - 1].offset > key.offset) {
            d->pieces[j] = d->pieces[j - 1];
            j--;
        }
        d->pieces[j] = key;
    }
    int64_t next = 0;
    for (size_t i = 0; i < d->n_pieces; i++) {
        if (d->pieces[i].offset > next) return -1;
        next = (int64_t)d->pieces[i].offset + d->pieces[i].length;
    }
    return next;
}

static void prune(struct fragtab *ft, uint64_t *counters) {
    if (ft->has_prune && (uint64_t)ft->ctime - (uint64_t)ft->prune_time <= PRUNE_DELAY_NS)
        return;
    ft->prune_time = ft->ctime;
    ft->has_prune = 1;
    for (size_t i = ft->n; i-- > 0;) {
        if ((uint64_t)ft->ctime - (uint64_t)ft->items[i].touched > FRAGMENT_TIMEOUT_NS) {
            drop(ft, i);
            counters[FRAGMENTS_UNASSEMBLED]++;
        }
    }
}

int meter_frag_add(struct fragtab *ft, int64_t t, const struct packet *p, struct packet *out,
                   uint64_t *counters) {
    if (ft->has_ctime && t < ft->ctime) {
        counters[FRAGMENT_OUT_OF_SEQUENCE]++;
        return 0;
    }
    ft->ctime = t;
    ft->has_ctime = 1;
    counters[FRAGMENTS]++;

    struct datagram *d = find_or_add(ft, p, t);
    if (!d) return -1;
    if (p->frag_offset == 0) {
        d->first = 1;
        if (p->l4hlen) {
            d->sp = p->key.sp;
            d->dp = p->key.dp;
            d->flags = p->flags;
        }
        d->smac = p->smac;
        d->dmac = p->dmac;
    }
    if (d->n_pieces == d->cap_pieces) {
        size_t cap = d->cap_pieces ? d->cap_pieces * 2 : 4;
        struct piece *pieces = realloc(d->pieces, cap * sizeof(*pieces));
        if (!pieces) return -1;
        d->pieces = pieces;
        d->cap_pieces = cap;
    }
    d->pieces[d->n_pieces].offset = p->frag_offset;
    d->pieces[d->n_pieces].length = p->iplen - p->iphlen;
    d->n_pieces++;
    if (!p->more) d->last = 1;

    int done = 0;
    int64_t length = covered(d);
    if (length >= 0) {
        int64_t headers = p->frag_offset == 0 ? p->l4hlen : 0;
        if (length + p->iphlen > 0xFFFF || length < headers) {
            counters[FRAGMENTS_UNASSEMBLED]++;
        } else {
            memset(out, 0, sizeof(*out));
            out->key = p->key;
            out->key.sp = d->sp;
            out->key.dp = d->dp;
            out->key.vlan = d->vlan;
            out->iplen = (uint32_t)(length + p->iphlen);
            out->datalen = (uint32_t)(length - headers);
            out->flags = d->flags;
            out->smac = d->smac;
            out->dmac = d->dmac;
            done = 1;
        }
        drop(ft, (size_t)(d - ft->items));
    }
    prune(ft, counters);
    return done;
}

void meter_frag_finish(struct fragtab *ft, uint64_t *counters) {
    counters[FRAGMENTS_UNASSEMBLED] += ft->n;
    while (ft->n) drop(ft, ft->n - 1);
}

void meter_frag_free(struct fragtab *ft) {
    while (ft->n) drop(ft, ft->n - 1);
    free(ft->items);
    ft->items = NULL;
    ft->cap = 0;
}
