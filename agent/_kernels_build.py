"""cffi build script (API mode, out of line) for ``agent._kernels``.

setup.py lists it under ``cffi_modules``; ``pip install -e .`` compiles it in place.
The declarations below repeat ``_kernels.h``.
"""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    typedef struct {
        uint32_t row_size;
        uint32_t source_address, destination_address;
        uint32_t source_port, destination_port;
        uint32_t protocol;
        int32_t n_activity;
        const uint32_t *activity_offset;
        const uint8_t *activity_width;
        const uint8_t *address_class;
        const uint8_t *port_services;
        const uint8_t *protocol_kind;
        const float *flag_rows;
        int32_t n_flags;
    } iw_layout;
    int64_t iw_remote(const uint8_t *rows, int64_t n, const iw_layout *layout,
                      uint8_t *remote);
    void iw_features(const uint8_t *rows, int64_t n, const iw_layout *layout, float *out);
    int64_t iw_accept(const double *proba, int64_t n, int32_t n_classes, const double *low,
                      const double *high, int32_t *label, double *confidence,
                      uint8_t *accepted);
    int64_t iw_inventory(const int32_t *slot, const int32_t *label, const uint8_t *accepted,
                         const double *start, const double *end, int64_t n,
                         int32_t n_classes, int64_t n_slots, double *first_seen,
                         double *detected, int64_t *hit_flow, int64_t *new_keys);
    int64_t iw_count(const int32_t *slot, const int32_t *label, const uint8_t *accepted,
                  int64_t n, int32_t n_classes, int64_t n_slots, int64_t *counts);
    void iw_find(const uint64_t *keys, int64_t n, const uint64_t *table_keys,
                 const int32_t *table_slots, uint64_t size, uint32_t shift,
                 uint64_t multiplier, int32_t *out);
    """
)
ffibuilder.set_source(
    "agent._kernels",
    '#include "_kernels.h"',
    sources=["agent/_kernels.c"],
    include_dirs=["agent"],
    libraries=["m"],
    extra_compile_args=["-O3", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
