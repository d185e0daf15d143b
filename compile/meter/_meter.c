/* The flow meter's biflow table in C (the rules are written out in table.py). */
#include "_meter.h"

#include <stdlib.h>
#include <string.h>

#define BATCH 64
#define FLUSH_DELAY_NS 5000000000LL
#define FLUSH_PENDING 2500
#define SMALL_PAYLOAD 60
#define LARGE_PAYLOAD 225

enum { END_IDLE = 1, END_ACTIVE = 2, END_CLOSED = 3, END_FORCED = 4 };
enum { ST_RST = 1, ST_FFIN = 2, ST_RFIN = 4, ST_FFINACK = 8, ST_RFINACK = 16 };
#define ST_ALL_FIN (ST_FFIN | ST_RFIN | ST_FFINACK | ST_RFINACK)

struct node {
    struct key key;
    struct meter_flow rec;
    int64_t ltime[2];
    uint64_t hash;
    int32_t chain, older, newer;
    uint32_t state;
};

struct meter {
    int64_t idle, active, ctime, flush_time;
    int has_ctime, has_flush;
    int batch, pending;
    struct node *nodes;
    int32_t n_nodes, cap_nodes, free_list;
    int32_t *buckets;
    uint64_t n_buckets, n_active;
    int32_t oldest, newest;
    struct meter_flow *closed;
    size_t n_closed, cap_closed;
    struct fragtab frag;
    uint64_t counters[METER_N_COUNTERS];
};

/* later - earlier for later >= earlier, exact even where int64 subtraction would overflow. */
static uint64_t since(int64_t later, int64_t earlier) {
    return (uint64_t)later - (uint64_t)earlier;
}

static uint64_t key_hash(const struct key *k) {
    uint64_t w[5];
    memcpy(w, k, sizeof(w));
    uint64_t h = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 5; i++) {
        h ^= w[i];
        h *= 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    return h;
}

static void key_reverse(const struct key *k, struct key *r) {
    memcpy(r->src, k->dst, 16);
    memcpy(r->dst, k->src, 16);
    r->vlan = k->vlan;
    r->proto = k->proto;
    r->version = k->version;
    if (k->proto == 1 || k->proto == 58) {
        r->sp = k->sp;
        r->dp = k->dp;
    } else {
        r->sp = k->dp;
        r->dp = k->sp;
    }
}

meter_t *meter_new(int64_t idle_ns, int64_t active_ns) {
    meter_t *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    m->idle = idle_ns;
    m->active = active_ns;
    m->n_buckets = 1 << 12;
    m->buckets = malloc(m->n_buckets * sizeof(int32_t));
    if (!m->buckets) { free(m); return NULL; }
    memset(m->buckets, 0xFF, m->n_buckets * sizeof(int32_t));
    m->free_list = m->oldest = m->newest = -1;
    return m;
}

void meter_free(meter_t *m) {
    if (!m) return;
    free(m->nodes);
    free(m->buckets);
    free(m->closed);
    meter_frag_free(&m->frag);
    free(m);
}

static int grow_buckets(meter_t *m) {
    uint64_t n = m->n_buckets * 2;
    int32_t *b = malloc(n * sizeof(int32_t));
    if (!b) return -1;
    memset(b, 0xFF, n * sizeof(int32_t));
    for (int32_t i = m->oldest; i >= 0; i = m->nodes[i].newer) {
        uint64_t slot = m->nodes[i].hash & (n - 1);
        m->nodes[i].chain = b[slot];
        b[slot] = i;
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = n;
    return 0;
}

static int32_t find(const meter_t *m, const struct key *k, uint64_t h) {
    for (int32_t i = m->buckets[h & (m->n_buckets - 1)]; i >= 0; i = m->nodes[i].chain) {
        if (m->nodes[i].hash == h && memcmp(&m->nodes[i].key, k, sizeof(*k)) == 0) return i;
    }
    return -1;
}

static void unlink_age(meter_t *m, int32_t i) {
    struct node *n = &m->nodes[i];
    if (n->older >= 0) m->nodes[n->older].newer = n->newer; else m->oldest = n->newer;
    if (n->newer >= 0) m->nodes[n->newer].older = n->older; else m->newest = n->older;
}

static void link_newest(meter_t *m, int32_t i) {
    struct node *n = &m->nodes[i];
    n->older = m->newest;
    n->newer = -1;
    if (m->newest >= 0) m->nodes[m->newest].newer = i; else m->oldest = i;
    m->newest = i;
}

static int close_flow(meter_t *m, int32_t i, uint8_t reason) {
    struct node *n = &m->nodes[i];
    if (m->n_closed == m->cap_closed) {
        size_t cap = m->cap_closed ? m->cap_closed * 2 : 1024;
        struct meter_flow *c = realloc(m->closed, cap * sizeof(*c));
        if (!c) return -1;
        m->closed = c;
        m->cap_closed = cap;
    }
    n->rec.reason = reason;
    m->closed[m->n_closed++] = n->rec;
    m->pending++;

    int32_t *slot = &m->buckets[n->hash & (m->n_buckets - 1)];
    while (*slot != i) slot = &m->nodes[*slot].chain;
    *slot = n->chain;
    unlink_age(m, i);
    n->chain = m->free_list;
    m->free_list = i;
    m->n_active--;
    return 0;
}

static int32_t new_flow(meter_t *m, const struct packet *p, uint64_t h, int64_t t) {
    if (m->n_active + 1 > m->n_buckets && grow_buckets(m) < 0) return -1;
    int32_t i = m->free_list;
    if (i >= 0) {
        m->free_list = m->nodes[i].chain;
    } else {
        if (m->n_nodes == m->cap_nodes) {
            int32_t cap = m->cap_nodes ? m->cap_nodes * 2 : 1024;
            struct node *nodes = realloc(m->nodes, (size_t)cap * sizeof(*nodes));
            if (!nodes) return -1;
            m->nodes = nodes;
            m->cap_nodes = cap;
        }
        i = m->n_nodes++;
    }
    struct node *n = &m->nodes[i];
    memset(n, 0, sizeof(*n));
    n->key = p->key;
    n->hash = h;
    n->rec.start_ns = n->rec.end_ns = t;
    n->rec.smac = p->smac;
    n->rec.dmac = p->dmac;
    memcpy(n->rec.src, p->key.src, 16);
    memcpy(n->rec.dst, p->key.dst, 16);
    n->rec.sp = p->key.sp;
    n->rec.dp = p->key.dp;
    n->rec.vlan = p->key.vlan;
    n->rec.proto = p->key.proto;
    n->rec.version = p->key.version;
    uint64_t slot = h & (m->n_buckets - 1);
    n->chain = m->buckets[slot];
    m->buckets[slot] = i;
    link_newest(m, i);
    m->n_active++;
    return i;
}

static int expire(meter_t *m) {
    while (m->oldest >= 0
           && since(m->ctime, m->nodes[m->oldest].rec.end_ns) > (uint64_t)m->idle) {
        if (close_flow(m, m->oldest, END_IDLE) < 0) return -1;
    }
    return 0;
}

static int flush(meter_t *m) {
    m->batch = 0;
    if (m->has_flush && since(m->ctime, m->flush_time) <= (uint64_t)FLUSH_DELAY_NS
        && m->pending < FLUSH_PENDING)
        return 0;
    m->flush_time = m->ctime;
    m->has_flush = 1;
    if (expire(m) < 0) return -1;
    m->pending = 0;
    return 0;
}

static void tcp_state(struct node *n, int reverse, uint8_t flags) {
    if (reverse) {
        if (flags & 0x01) n->state |= ST_RFIN;
        if ((n->state & ST_FFIN) && (flags & 0x10)) n->state |= ST_RFINACK;
    } else {
        if (flags & 0x01) n->state |= ST_FFIN;
        if ((n->state & ST_RFIN) && (flags & 0x10)) n->state |= ST_FFINACK;
    }
    if (flags & 0x04) n->state |= ST_RST;
}

static int packet(meter_t *m, int64_t t, const struct packet *p) {
    uint64_t h = key_hash(&p->key);
    int32_t i = find(m, &p->key, h);
    int reverse = 0;
    if (i < 0) {
        struct key r;
        key_reverse(&p->key, &r);
        i = find(m, &r, key_hash(&r));
        reverse = i >= 0;
    }
    if (i >= 0 && since(t, m->nodes[i].rec.start_ns) > (uint64_t)m->active) {
        if (close_flow(m, i, END_ACTIVE) < 0) return -1;
        i = -1;
    } else if (i >= 0 && since(t, m->nodes[i].rec.end_ns) > (uint64_t)m->idle) {
        if (close_flow(m, i, END_IDLE) < 0) return -1;
        i = -1;
    }
    if (i < 0) {
        reverse = 0;
        if ((i = new_flow(m, p, h, t)) < 0) return -1;
    }
    struct node *n = &m->nodes[i];
    struct meter_dir *d = reverse ? &n->rec.rev : &n->rec.fwd;
    if (p->key.proto == 6) tcp_state(n, reverse, p->flags);

    d->oct += p->iplen;
    d->pkt += 1;
    n->rec.end_ns = t;
    uint32_t gap = 0;
    if (d->pkt > 1) {
        gap = (uint32_t)(since(t, n->ltime[reverse]) / 1000000);
        d->aitime += gap;
    }
    if (d->pkt >= 2 && d->pkt <= METER_KEPT + 1) d->ia[d->pkt - 2] = gap;
    n->ltime[reverse] = t;
    uint32_t len = p->datalen;
    if (len) {
        if (reverse) {
            uint32_t shift = (n->rec.fwd.nonempty + n->rec.rev.nonempty) & 31;
            n->rec.pktdir |= (uint8_t)((1u << shift) & 0xFF);
        }
        if (d->nonempty < METER_KEPT) d->psize[d->nonempty] = (uint16_t)len;
        d->nonempty++;
        if (len < SMALL_PAYLOAD) d->small++;
        else if (len > LARGE_PAYLOAD) d->large++;
        d->payoct += len;
        if (d->first == 0) d->first = len;
        if (len > d->maxsize) d->maxsize = len;
    }

    if ((n->state & ST_RST) || (n->state & ST_ALL_FIN) == ST_ALL_FIN)
        return close_flow(m, i, END_CLOSED);
    unlink_age(m, i);
    link_newest(m, i);
    return 0;
}

static int accept(meter_t *m, int64_t t, const struct packet *p, int counter) {
    if (m->has_ctime && t < m->ctime) {
        m->counters[counter == METERED ? OUT_OF_SEQUENCE : REASSEMBLED_OUT_OF_SEQUENCE]++;
        return 0;
    }
    m->counters[counter]++;
    m->ctime = t;
    m->has_ctime = 1;
    return packet(m, t, p);
}

int meter_feed(meter_t *m, const uint8_t *buf, size_t n, const int64_t *ts_ns,
               const int64_t *offset, const uint32_t *caplen, const uint16_t *linktypes) {
    struct packet p, whole;
    for (size_t j = 0; j < n; j++) {
        int64_t t = ts_ns[j];
        int code = meter_decode(buf + offset[j], caplen[j], linktypes[j], &p);
        if (code != METERED) {
            m->counters[code]++;
        } else if (p.is_frag) {
            int done = meter_frag_add(&m->frag, t, &p, &whole, m->counters);
            if (done < 0) return -1;
            if (done && accept(m, t, &whole, REASSEMBLED) < 0) return -1;
        } else if (accept(m, t, &p, METERED) < 0) {
            return -1;
        }
        if (++m->batch == BATCH && flush(m) < 0) return -1;
    }
    return 0;
}

int meter_finish(meter_t *m) {
    if (m->batch && flush(m) < 0) return -1;
    meter_frag_finish(&m->frag, m->counters);
    if (m->has_ctime && expire(m) < 0) return -1;
    while (m->oldest >= 0) {
        if (close_flow(m, m->oldest, END_FORCED) < 0) return -1;
    }
    return 0;
}

size_t meter_pending(const meter_t *m) { return m->n_closed; }

size_t meter_drain(meter_t *m, struct meter_flow *out, size_t max) {
    size_t n = m->n_closed < max ? m->n_closed : max;
    memcpy(out, m->closed, n * sizeof(*out));
    memmove(m->closed, m->closed + n, (m->n_closed - n) * sizeof(*out));
    m->n_closed -= n;
    return n;
}

void meter_counters(const meter_t *m, uint64_t *out) {
    memcpy(out, m->counters, sizeof(m->counters));
}
