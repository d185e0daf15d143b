"""cffi build script (API mode, out of line) for ``compile.meter._native``.

setup.py lists it under ``cffi_modules``; ``pip install -e .`` compiles it in place.
The declarations below repeat ``_meter.h``.
"""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
    #define METER_KEPT 10
    #define METER_N_COUNTERS 15
    struct meter_dir {
        uint64_t pkt, oct, payoct, aitime;
        uint32_t nonempty, small, large, first, maxsize;
        uint32_t ia[10];
        uint16_t psize[10];
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
    long meter_scan_pcap(const uint8_t *buf, size_t len, size_t *pos, int big_endian,
                         int nanos, uint16_t linktype, long max, int64_t *ts_ns,
                         int64_t *offset, uint32_t *caplen, uint16_t *linktypes, int *status);
    long meter_scan_pcapng(const uint8_t *buf, size_t len, size_t *pos, int big_endian,
                           const uint16_t *if_linktype, const int8_t *if_tsexp, int n_if,
                           long max, int64_t *ts_ns, int64_t *offset, uint32_t *caplen,
                           uint16_t *linktypes, int *status);
    meter_t *meter_new(int64_t idle_ns, int64_t active_ns);
    void meter_free(meter_t *m);
    int meter_feed(meter_t *m, const uint8_t *buf, size_t n, const int64_t *ts_ns,
                   const int64_t *offset, const uint32_t *caplen, const uint16_t *linktypes);
    int meter_finish(meter_t *m);
    size_t meter_pending(const meter_t *m);
    size_t meter_drain(meter_t *m, struct meter_flow *out, size_t max);
    void meter_counters(const meter_t *m, uint64_t *out);
    """
)
ffibuilder.set_source(
    "compile.meter._native",
    '#include "_meter.h"',
    sources=[
        "compile/meter/_meter.c",
        "compile/meter/_meter_decode.c",
        "compile/meter/_meter_frag.c",
        "compile/meter/_meter_scan.c",
    ],
    include_dirs=["compile/meter"],
    extra_compile_args=["-O2"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
