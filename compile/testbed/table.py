"""The device table flattened into numbers: one row per (device, binding, variant).

Each binding of a service model to a device gets ``VARIANTS`` variants, each with its own
deterministic perturbation of sizes, gaps and packet counts (seeded by the names, not by
the run's seed, so a device behaves the same in every capture). A flow picks a variant
at random: devices sharing a model then overlap partly, as real devices talking to the
same kind of server do.
"""

import zlib
from dataclasses import dataclass

import numpy as np

from .devices import DEVICES
from .models import DESTINATIONS, MODELS, PROTO_TCP, Direction, ServiceModel

VARIANTS = 3
#: Spread (log-normal sigma) of the perturbation of a shared model: per device, then
#: per variant on top. These set how much devices sharing a model overlap.
DEVICE_SPREAD = {"size": 0.55, "gap": 0.9, "count": 0.4, "sd": 0.6}
VARIANT_SPREAD = {"size": 0.06, "gap": 0.12, "count": 0.06, "sd": 0.15}

_DIR_FIELDS = (
    "pk_med",
    "pk_sig",
    "pk_min",
    "pk_max",
    "first_mu",
    "first_sd",
    "size_mu",
    "size_sd",
    "empty",
    "bulk",
    "gap_med",
    "gap_sig",
)
FIELDS = (
    (
        "proto",
        "port0",
        "port1",
        "port2",
        "port3",
        "nports",
        "source_port",
        "destination",
        "rtt",
        "lead_empty",
    )
    + tuple("f_" + f for f in _DIR_FIELDS)
    + tuple("r_" + f for f in _DIR_FIELDS)
)
COL = {name: i for i, name in enumerate(FIELDS)}
KINDS = ("remote", "local", "interaction")


@dataclass(frozen=True)
class Table:
    """Rows of parameters and, per row, who and what they belong to."""

    params: np.ndarray  # float64 (rows, len(FIELDS))
    device: np.ndarray  # int16 device index per row
    kind: np.ndarray  # int8 index into KINDS
    binding: np.ndarray  # int16 index into ``binding_names``
    weight: np.ndarray  # float64 binding weight within (device, kind)
    binding_names: tuple[str, ...]

    def rows(self, device: int, kind: str) -> np.ndarray:
        """Row indices of one device's bindings of one kind."""
        return np.flatnonzero((self.device == device) & (self.kind == KINDS.index(kind)))


def _factors(rng: np.random.Generator, jitter: bool) -> dict[str, float]:
    """Multipliers of one direction for one device."""
    if not jitter:
        return dict.fromkeys(DEVICE_SPREAD, 1.0)
    return {k: float(np.exp(rng.normal(0, s))) for k, s in DEVICE_SPREAD.items()}


def _variant(rng: np.random.Generator, jitter: bool) -> dict[str, float]:
    if not jitter:
        return dict.fromkeys(VARIANT_SPREAD, 1.0)
    return {k: float(np.exp(rng.normal(0, s))) for k, s in VARIANT_SPREAD.items()}


def _direction_values(d: Direction, f: dict[str, float]) -> list[float]:
    med, sig, lo, hi = d.packets
    med_j = min(max(med * f["count"], lo), hi) if hi > lo else med
    return [
        med_j,
        sig,
        lo,
        hi,
        d.first[0] * f["size"],
        d.first[1] * f["sd"],
        d.size[0] * f["size"],
        d.size[1] * f["sd"],
        d.empty,
        d.bulk,
        d.gap[0] * f["gap"],
        d.gap[1],
    ]


def _times(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a[k] * b[k] for k in a}


def model_row(
    model: ServiceModel,
    device: tuple[dict, dict],
    variant: tuple[dict, dict],
) -> list[float]:
    """One row of ``FIELDS`` for a model, with (forward, reverse) multipliers of the
    device and of the variant."""
    ports = list(model.ports)[:4]
    row = [
        model.proto,
        *(ports + [ports[-1]] * (4 - len(ports))),
        len(ports),
        model.source_port,
        DESTINATIONS.index(model.destination),
        model.rtt,
        1.0 if model.proto == PROTO_TCP else 0.0,
    ]
    row += _direction_values(model.fwd, _times(device[0], variant[0]))
    row += _direction_values(model.rev, _times(device[1], variant[1]))
    return row


def name_seed(*names: str) -> int:
    """A stable seed from names (independent of the run's seed)."""
    return zlib.crc32("/".join(names).encode())


def binding_rows(owner: str, kind: str, name: str, model: ServiceModel) -> list[list[float]]:
    """``VARIANTS`` parameter rows of one model bound to ``owner`` (a device's name).

    A shared model (one of ``MODELS``, by name) gets the device's own perturbation; a
    model written for the device keeps its values, varied per variant only.
    """
    rng = np.random.default_rng(name_seed(owner, kind, name))
    fixed = model.fwd.first[1] == 0 and model.rev.first[1] == 0
    shared = name in MODELS and not fixed
    own = (_factors(rng, shared), _factors(rng, shared))
    return [
        model_row(model, own, (_variant(rng, not fixed), _variant(rng, not fixed)))
        for _ in range(VARIANTS)
    ]


def build_table(devices=DEVICES) -> Table:
    """The full parameter table of every device of ``devices``."""
    params, device, kind, binding, weight, names = [], [], [], [], [], []
    for d_index, dev in enumerate(devices):
        groups = {"remote": dev.remote, "local": dev.local, "interaction": dev.interaction[1]}
        for kind_name, bindings in groups.items():
            for b_name, model, w in bindings:
                if b_name not in names:
                    names.append(b_name)
                for row in binding_rows(dev.name, kind_name, b_name, model):
                    params.append(row)
                    device.append(d_index)
                    kind.append(KINDS.index(kind_name))
                    binding.append(names.index(b_name))
                    weight.append(w / VARIANTS)
    return Table(
        np.asarray(params, dtype=np.float64),
        np.asarray(device, dtype=np.int16),
        np.asarray(kind, dtype=np.int8),
        np.asarray(binding, dtype=np.int16),
        np.asarray(weight, dtype=np.float64),
        tuple(names),
    )
