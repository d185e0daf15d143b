"""cffi build script (API mode, out of line) for ``agent.ipfix._native``.

setup.py lists it under ``cffi_modules``; ``pip install -e .`` compiles it in place.
"""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    typedef struct {
        int16_t sub; uint16_t src; uint16_t len; uint16_t dst; uint8_t dst_len; uint8_t kind;
    } ipfix_op;
    int ipfix_decode_flows(const uint8_t *buf, size_t len, const uint16_t *field_lens,
                           const uint8_t *field_kinds, int nfields, uint16_t min_length,
                           const ipfix_op *ops, int nops, const uint16_t *sub_tids,
                           const uint16_t *sub_lens, int nsub, uint8_t *out,
                           size_t row_size, int max_rows, int *error);
    """
)
ffibuilder.set_source(
    "agent.ipfix._native",
    '#include "_native.h"',
    sources=["agent/ipfix/_native.c"],
    include_dirs=["agent/ipfix"],
    extra_compile_args=["-O3"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
