/* Per-row steps of the agent's pipeline over whole batches, twins of the numpy code in
 * agent/features.py, agent/score.py, agent/inventory.py, agent/trust.py and
 * agent/homes.py (the tables come from there, so the policy, which
 * addresses are local and which ports name a service, stays in Python). */
#include <stdint.h>

/* Where the flow table's fields are, and the lookup tables of agent/features.py. */
typedef struct {
    uint32_t row_size;
    uint32_t source_address, destination_address;   /* 16 octets each */
    uint32_t source_port, destination_port;         /* uint16 */
    uint32_t protocol;                              /* uint8 */
    int32_t n_activity;
    const uint32_t *activity_offset;                /* per activity feature */
    const uint8_t *activity_width;                  /* 1, 2, 4 or 8 octets, unsigned */
    const uint8_t *address_class;                   /* 2 x 65536 keys: 1 private, 2 never
                                                       routed, 4 maybe special */
    const uint8_t *port_services;                   /* 65536 ports: service bits */
    const uint8_t *protocol_kind;                   /* 256 protocols: 0, 16 or 32 */
    const float *flag_rows;                         /* 48 rows of n_flags */
    int32_t n_flags;
} iw_layout;

int64_t iw_remote(const uint8_t *rows, int64_t n, const iw_layout *layout, uint8_t *remote);
void iw_features(const uint8_t *rows, int64_t n, const iw_layout *layout, float *out);
int64_t iw_accept(const double *proba, int64_t n, int32_t n_classes, const double *low,
                  const double *high, int32_t *label, double *confidence, uint8_t *accepted);
int64_t iw_inventory(const int32_t *slot, const int32_t *label, const uint8_t *accepted,
                     const double *start, const double *end, int64_t n, int32_t n_classes,
                     int64_t n_slots, double *first_seen, double *detected, int64_t *hit_flow,
                     int64_t *new_keys);
int64_t iw_count(const int32_t *slot, const int32_t *label, const uint8_t *accepted, int64_t n,
                 int32_t n_classes, int64_t n_slots, int64_t *counts);
void iw_find(const uint64_t *keys, int64_t n, const uint64_t *table_keys,
             const int32_t *table_slots, uint64_t size, uint32_t shift, uint64_t multiplier,
             int32_t *out);
