"""The behaviour changes of the test period (paper, section V-C), injected on purpose.

Each change is listed in ``CHANGES`` (written out as ``changes.json``) so that tests and
the evaluation can check that the trust metric notices it. Flow-count changes scale a
device's daily rate; feature changes rewrite the parameter rows of the affected flows.
The short capture of 20 April (``calendar``) is listed too, for every device type
(``*``): the paper names it as the cause of that day's trust drop (section V-C).
"""

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np

from .calendar import SHORT_DAY, SHORT_DAY_HOURS, TEST_START
from .table import COL

ECHO = "Amazon Echo Show"
JVC_HUB = "JVC Kenwood hub"
BRAVIA = "Sony Bravia TV"
ROOMBA = "iRobot Roomba"
PLUG = "Power Elec plug"
PLANEX_OUTDOOR = "Planex outdoor camera"
EVERY_TYPE = "*"

ECHO_FROM = dt.date(2020, 4, 9)
ECHO_REVERSE_BYTES = 0.65  # reverse payloads shrink by about a third
ECHO_REVERSE_GAP = 2.0  # reverse inter-arrival 11 s -> 22 s
JVC_BURST_DAYS = (dt.date(2020, 3, 16), dt.date(2020, 3, 17))
JVC_BURST_FLOWS = (993, 1019)
JVC_LOW_FROM = dt.date(2020, 4, 14)
JVC_LOW_FLOWS = 220
BRAVIA_BURST_DAY = dt.date(2020, 4, 14)
BRAVIA_BURST_FLOWS = 98_019
PLUG_DRIFT_DAYS = 21  # days from the test start until the plug's UDP/10001 looks like Planex's
PLUG_ONSET = 0.6  # share of that way already gone on the first test day (see drift_progress)


@dataclass(frozen=True)
class Change:
    """One injected behaviour change, as listed in the manifest."""

    device_type: str  # or EVERY_TYPE
    kind: str  # "features" | "flow-count" | "capture"
    start: str  # ISO date, first affected day
    end: str  # ISO date, last affected day
    description: str


CHANGES = (
    Change(
        ECHO,
        "features",
        ECHO_FROM.isoformat(),
        "2020-04-30",
        "reverseOctetTotalCount and reverseDataByteCount down 30-40% and "
        "reverseAverageInterarrivalTime up from about 11 s to 22 s (firmware upgrade)",
    ),
    Change(
        JVC_HUB,
        "flow-count",
        JVC_BURST_DAYS[0].isoformat(),
        JVC_BURST_DAYS[-1].isoformat(),
        "about 1,000 flows a day (993 and 1,019) against about 470 expected",
    ),
    Change(
        JVC_HUB,
        "flow-count",
        JVC_LOW_FROM.isoformat(),
        "2020-04-30",
        "about 220 flows a day against about 470 expected (firmware upgrade)",
    ),
    Change(
        BRAVIA,
        "flow-count",
        BRAVIA_BURST_DAY.isoformat(),
        BRAVIA_BURST_DAY.isoformat(),
        "98,019 flows in one day against 5,648 usual",
    ),
    Change(
        ROOMBA,
        "flow-count",
        SHORT_DAY.isoformat(),
        SHORT_DAY.isoformat(),
        "about 6 flows against about 50 usual: only 3 hours were captured that day",
    ),
    Change(
        EVERY_TYPE,
        "capture",
        SHORT_DAY.isoformat(),
        SHORT_DAY.isoformat(),
        f"the whole lab: only {SHORT_DAY_HOURS} hours captured (server shut down early)",
    ),
    Change(
        PLUG,
        "features",
        TEST_START.isoformat(),
        "2020-04-30",
        "UDP/10001 flows drift toward the Planex outdoor camera's: more forward packets, "
        "shorter inter-arrival times",
    ),
)


def manifest(plug_onset: float = PLUG_ONSET) -> list[dict]:
    """The changes as JSON-ready dicts; the plug's entry says how its drift starts."""
    out = [asdict(c) for c in CHANGES]
    for entry in out:
        if entry["device_type"] == PLUG:
            entry["description"] += (
                f" (a step of {plug_onset:.0%} of the way on the first day, the rest over "
                f"{PLUG_DRIFT_DAYS} days)"
            )
    return out


def rate_factor(device: str, base_per_day: float, date: dt.date) -> float:
    """Multiplier of a device's usual daily flow rate on ``date``."""
    if device == JVC_HUB and date in JVC_BURST_DAYS:
        return JVC_BURST_FLOWS[JVC_BURST_DAYS.index(date)] / base_per_day
    if device == JVC_HUB and date >= JVC_LOW_FROM:
        return JVC_LOW_FLOWS / base_per_day
    if device == BRAVIA and date == BRAVIA_BURST_DAY:
        return BRAVIA_BURST_FLOWS / base_per_day
    return 1.0


def drift_progress(date: dt.date, onset: float = PLUG_ONSET) -> float:
    """How far (0..1) the plug's UDP/10001 behaviour has moved toward Planex's.

    The paper finds the plug's UDP/10001 flows already changed in the test period and most
    of them predicted as the Planex camera (section V-B), so the change starts with a
    step at the start of the test period (``onset`` of the way) and then keeps drifting
    for the rest. ``onset=0`` gives a drift that starts from nothing, the case the
    README's Limitations measure.
    """
    if date < TEST_START:
        return 0.0
    ramp = min(1.0, ((date - TEST_START).days + 1) / PLUG_DRIFT_DAYS)
    return onset + (1.0 - onset) * ramp


_DRIFT_FIELDS = (
    "f_pk_med",
    "f_pk_min",
    "f_pk_max",
    "f_gap_med",
    "r_pk_med",
    "r_pk_min",
    "r_pk_max",
    "r_gap_med",
)


def apply(
    params: np.ndarray,
    device: str,
    binding: str,
    date: dt.date,
    target: np.ndarray | None = None,
    plug_onset: float = PLUG_ONSET,
) -> None:
    """Rewrite (in place) parameter rows of ``device``'s ``binding`` flows on ``date``.

    ``target`` is the row the plug drifts toward (Planex outdoor camera's UDP/10001).
    """
    if device == ECHO and date >= ECHO_FROM and params[0, COL["proto"]] == 6:
        for field in ("r_first_mu", "r_size_mu", "r_size_sd"):
            params[:, COL[field]] *= ECHO_REVERSE_BYTES
        if binding == "alexa_channel":
            params[:, COL["r_gap_med"]] *= ECHO_REVERSE_GAP
    if device == PLUG and binding == "udp10001" and target is not None:
        t = drift_progress(date, plug_onset)
        for field in _DRIFT_FIELDS:
            c = COL[field]
            params[:, c] = np.exp((1 - t) * np.log(params[:, c] + 1) + t * np.log(target[c] + 1))
            params[:, c] -= 1
