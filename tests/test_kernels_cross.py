"""The pipeline's C steps on a big-endian router CPU: ``agent/_kernels.c`` cross-built for
mips-linux-gnu (as OpenWrt's ath79 routers run) and run under qemu-user gives the remote
mask and feature rows that the numpy twins give on this host for the same flows."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tool

from agent import features
from agent.flows import FLOW_DTYPE
from compile.cross_check import qemu_command
from tests.test_features import random_table

AGENT = Path(features.__file__).resolve().parent


def _c_array(kind: str, name: str, values) -> str:
    body = ",".join(str(v) for v in values)
    return f"static const {kind} {name}[] = {{{body}}};"


def harness(flows: np.ndarray) -> str:
    """A C program holding the flows in the target's byte order and the feature tables,
    printing the remote flag and the 28 features (exact hex floats) of each row."""
    names = features.FEATURE_NAMES[: 2 * len(features.ACTIVITY_FIELDS)]
    fields = FLOW_DTYPE.fields
    big = flows.astype(FLOW_DTYPE.newbyteorder(">")).view(np.uint8)
    flags = ",".join(float(v).hex() for v in features._FLAG_ROWS.ravel())
    return "\n".join(
        [
            "#include <stdio.h>",
            '#include "_kernels.h"',
            _c_array("uint8_t", "rows", big.tolist()),
            _c_array("uint32_t", "offsets", [fields[n][1] for n in names]),
            _c_array("uint8_t", "widths", [fields[n][0].itemsize for n in names]),
            _c_array("uint8_t", "classes", features._CLASSES.tolist()),
            _c_array("uint8_t", "ports", features._PORT_SERVICES.tolist()),
            _c_array("uint8_t", "kinds", features._PROTOCOL_KIND.tolist()),
            f"static const float flags[] = {{{flags}}};",
            "int main(void) {",
            f"    const int64_t n = {len(flows)};",
            "    static uint8_t remote[1 << 16]; static float x[(1 << 16) * 28];",
            "    iw_layout layout = {",
            f"        {FLOW_DTYPE.itemsize}, {fields['sourceAddress'][1]},",
            f"        {fields['destinationAddress'][1]}, {fields['sourceTransportPort'][1]},",
            f"        {fields['destinationTransportPort'][1]},",
            f"        {fields['protocolIdentifier'][1]}, {len(names)}, offsets, widths,",
            f"        classes, ports, kinds, flags, {len(features.SERVICE_FLAGS)}}};",
            "    iw_remote(rows, n, &layout, remote);",
            "    iw_features(rows, n, &layout, x);",
            "    for (int64_t i = 0; i < n; i++) {",
            '        printf("%d", remote[i]);',
            '        for (int c = 0; c < 28; c++) printf(" %a", (double)x[i * 28 + c]);',
            '        printf("\\n");',
            "    }",
            "    return 0;",
            "}",
        ]
    )


@pytest.mark.parametrize("triple", ["mips-linux-gnu"])
def test_kernels_on_a_big_endian_cpu_match_numpy(tmp_path, triple):
    """600 random flows (edge addresses, every service port): same remote flags and the
    same float32 features, bit for bit."""
    cc = require_tool(f"{triple}-gcc")
    require_tool(qemu_command(triple)[0])
    flows = random_table(600, 11)
    (tmp_path / "main.c").write_text(harness(flows))
    exe = tmp_path / "kernels"
    subprocess.run(
        [cc, "-O2", f"-I{AGENT}", "-o", str(exe), str(tmp_path / "main.c"),
         str(AGENT / "_kernels.c"), "-lm"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    out = subprocess.run(
        [*qemu_command(triple), str(exe)], check=True, capture_output=True, text=True
    ).stdout.split("\n")[:-1]

    remote = np.array([int(line.split()[0]) for line in out], dtype=bool)
    rows = np.array([[float.fromhex(v) for v in line.split()[1:]] for line in out])
    np.testing.assert_array_equal(remote, features.remote_mask(flows, native=False))
    expected = features.feature_matrix(flows, native=False)
    np.testing.assert_array_equal(rows.astype(np.float32), expected)
    assert 0 < remote.sum() < len(remote)
