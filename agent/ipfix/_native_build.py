"""cffi build script (API mode, out of line) for ``agent.ipfix._native``.

setup.py lists it under ``cffi_modules``; ``pip install -e .`` compiles it in place.
The declarations below mirror ``_native.h``.
"""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    typedef struct {
        int16_t sub; uint16_t src; uint16_t len; uint16_t dst; uint8_t dst_len; uint8_t kind;
    } ipfix_op;
    typedef struct {
        const uint16_t *field_lens; const uint8_t *field_kinds; const ipfix_op *ops;
        const uint16_t *sub_tids; const uint16_t *sub_lens;
        int32_t nfields, nops, nsub; uint32_t min_length; int8_t ip_version;
    } ipfix_plan;
    typedef struct {
        uint32_t off, len, domain; uint16_t plan; uint16_t pad; int32_t rows; int32_t error;
    } ipfix_job;
    typedef struct {
        uint32_t export_time, sequence, domain; uint32_t tset_off, tset_len;
        uint32_t first_set, nsets; uint32_t status; int32_t ref; uint32_t same;
    } ipfix_msg;
    typedef struct { uint32_t off, len; uint32_t set_id; } ipfix_set;
    typedef struct {
        uint32_t domain, sequence, set_id, tset_len; const uint8_t *tset;
    } ipfix_steady;
    int ipfix_decode_flows(const uint8_t *buf, size_t len, const uint16_t *field_lens,
                           const uint8_t *field_kinds, int nfields, uint16_t min_length,
                           const ipfix_op *ops, int nops, const uint16_t *sub_tids,
                           const uint16_t *sub_lens, int nsub, uint8_t *out,
                           size_t row_size, int max_rows, int *error);
    int ipfix_decode_jobs(const uint8_t *buf, ipfix_job *jobs, int njobs,
                          const ipfix_plan *const *plans, uint8_t *out, size_t row_size,
                          int max_rows, size_t domain_off, size_t version_off);
    int ipfix_index_messages(const uint8_t *buf, const uint32_t *offs, const uint32_t *lens,
                             int n, const uint32_t *slots, int32_t *last, ipfix_msg *msgs,
                             ipfix_set *sets, int max_sets);
    int ipfix_decode_steady(const uint8_t *buf, const uint32_t *lens, int n,
                            const ipfix_steady *steady, const ipfix_plan *plan,
                            uint8_t *out, size_t row_size, int max_rows, size_t domain_off,
                            size_t version_off, int64_t *counts, uint32_t *next);
    """
)
ffibuilder.set_source(
    "agent.ipfix._native",
    '#include "_native.h"',
    sources=["agent/ipfix/_native.c"],
    include_dirs=["agent/ipfix"],
    extra_compile_args=["-O3", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
