"""Decoding and strict validation of one agent summary (docs/interfaces.md section 6).

``parse(body, ...)`` turns a msgpack body into a ``Summary`` or raises ``SummaryError``
naming the field (``events[3].hit_flow``). Nothing downstream re-checks: what passes here
is what the database receives.
"""

import math
import time
from dataclasses import dataclass, field

import msgpack

from store.errors import SummaryError

FORMAT_VERSION = 1
KINDS = ("detections", "trust")

MAX_TEXT = 256
MAX_COUNTERS = 256
MAX_EVENTS = 10_000
MAX_DEVICES = 1_000
MAX_COUNT = 10**12
MAX_INT64 = 2**63 - 1
MAX_WINDOW_SECONDS = 7 * 86400.0
HIT_TIME_TOLERANCE = 1.0
EARLIEST_TIME = 946684800.0
MAX_CLOCK_SKEW = 86400.0

COMMON_KEYS = {"v", "agent", "seq", "kind", "sent_at", "model", "counters"}
KIND_KEYS = {"detections": {"events"}, "trust": {"home", "window", "devices"}}
SUMMARY_KEYS = {kind: frozenset(COMMON_KEYS | extra) for kind, extra in KIND_KEYS.items()}
EVENT_KEYS = {"home", "device_type", "first_seen", "detected", "hit_time", "hit_flow"}
DEVICE_KEYS = {"device_type", "accepted", "discarded", "raw_trust", "trust"}


@dataclass(frozen=True, slots=True)
class Detection:
    """A device type that joined a home's inventory."""

    home: str
    device_type: str
    first_seen: float
    detected: float
    hit_time: float
    hit_flow: int


@dataclass(frozen=True, slots=True)
class DeviceTrust:
    """One device type's counts and trust in one home-window."""

    device_type: str
    accepted: int
    discarded: int
    raw_trust: float
    trust: float


@dataclass(frozen=True, slots=True)
class Summary:
    """A validated summary; detections fill ``events``, trust fills home/window/devices."""

    agent: str
    seq: int
    kind: str
    sent_at: float
    model: str
    counters: dict[str, int]
    events: tuple[Detection, ...] = ()
    home: str | None = None
    window_start: float | None = None
    window_end: float | None = None
    devices: tuple[DeviceTrust, ...] = field(default=())


@dataclass(frozen=True)
class Rules:
    """What counts as valid: known device types (None = any) and the plausible times."""

    device_types: frozenset[str] | None = None
    earliest_time: float = EARLIEST_TIME
    max_clock_skew: float = MAX_CLOCK_SKEW


def parse(body: bytes, agent_id: str, rules: Rules, now: float | None = None) -> Summary:
    """Decode and validate a summary body sent by ``agent_id``."""
    try:
        doc = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise SummaryError("body", f"not a msgpack value: {type(exc).__name__}") from None
    except RecursionError:
        raise SummaryError("body", "nested too deeply") from None
    check = _Checker(rules, time.time() if now is None else now)
    return check.summary(doc, agent_id)


class _Checker:
    """Field-by-field checks; each raises SummaryError with the field's path."""

    def __init__(self, rules: Rules, now: float):
        self.rules = rules
        self.latest_time = now + rules.max_clock_skew

    def summary(self, doc: object, agent_id: str) -> Summary:
        """The whole body."""
        if not isinstance(doc, dict):
            raise SummaryError("body", "must be a msgpack map")
        kind = doc.get("kind")
        if kind not in KINDS:
            raise SummaryError("kind", f"must be one of {', '.join(KINDS)}")
        self.keys(doc, SUMMARY_KEYS[kind], "")

        if self.integer(doc, "v", "v", 0, MAX_INT64) != FORMAT_VERSION:
            raise SummaryError("v", f"unsupported format version (expected {FORMAT_VERSION})")
        agent = self.text(doc, "agent", "agent")
        if agent != agent_id:
            raise SummaryError("agent", "does not match the X-Agent-Id header")
        common = {
            "agent": agent,
            "seq": self.integer(doc, "seq", "seq", 1, MAX_INT64),
            "kind": kind,
            "sent_at": self.time(doc, "sent_at", "sent_at"),
            "model": self.text(doc, "model", "model"),
            "counters": self.counters(doc["counters"]),
        }
        if kind == "detections":
            return Summary(**common, events=self.events(doc))
        start, end = self.window(doc)
        return Summary(
            **common,
            home=self.text(doc, "home", "home"),
            window_start=start,
            window_end=end,
            devices=self.devices(doc),
        )

    def keys(self, doc: dict, allowed: set[str], where: str) -> None:
        """Every allowed key present and no other."""
        if doc.keys() == allowed:
            return
        for key in sorted(allowed):
            if key not in doc:
                raise SummaryError(where + key, "missing")
        for key in doc:
            if key not in allowed:
                raise SummaryError(where + str(key)[:64], "unknown field")

    def text(self, doc: dict, key: str, where: str) -> str:
        """A non-empty string without NUL, at most MAX_TEXT characters."""
        value = doc[key]
        if not isinstance(value, str):
            raise SummaryError(where, "must be a string")
        if not value or len(value) > MAX_TEXT:
            raise SummaryError(where, f"must be 1..{MAX_TEXT} characters")
        if "\x00" in value:
            raise SummaryError(where, "must not contain NUL")
        return value

    def integer(self, doc: dict, key: str, where: str, low: int, high: int) -> int:
        """An integer (not a bool) within [low, high]."""
        value = doc[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise SummaryError(where, "must be an integer")
        if not low <= value <= high:
            raise SummaryError(where, f"must be in {low}..{high}")
        return value

    def number(self, doc: dict, key: str, where: str, low: float, high: float) -> float:
        """A finite int or float within [low, high], as float."""
        value = doc[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SummaryError(where, "must be a number")
        value = float(value)
        if not math.isfinite(value) or not low <= value <= high:
            raise SummaryError(where, f"must be a finite number in {low:g}..{high:g}")
        return value

    def time(self, doc: dict, key: str, where: str) -> float:
        """Unix seconds between EARLIEST_TIME and the store's clock plus the skew."""
        return self.number(doc, key, where, self.rules.earliest_time, self.latest_time)

    def device_type(self, doc: dict, where: str) -> str:
        """A device type the store knows (any text when no list was given)."""
        value = self.text(doc, "device_type", where)
        known = self.rules.device_types
        if known is not None and value not in known:
            raise SummaryError(where, "unknown device type")
        return value

    def counters(self, value: object) -> dict[str, int]:
        """The agent's counters: string keys, non-negative int64 values."""
        if not isinstance(value, dict):
            raise SummaryError("counters", "must be a map")
        if len(value) > MAX_COUNTERS:
            raise SummaryError("counters", f"more than {MAX_COUNTERS} entries")
        for key in value:
            where = f"counters.{str(key)[:64]}"
            if not isinstance(key, str) or not key or len(key) > MAX_TEXT or "\x00" in key:
                raise SummaryError(where, "name must be a string without NUL")
            self.integer(value, key, where, 0, MAX_INT64)
        return value

    def items(self, doc: dict, key: str, limit: int) -> list:
        """A list of at most ``limit`` maps."""
        value = doc[key]
        if not isinstance(value, list):
            raise SummaryError(key, "must be an array")
        if len(value) > limit:
            raise SummaryError(key, f"more than {limit} entries")
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise SummaryError(f"{key}[{i}]", "must be a map")
        return value

    def events(self, doc: dict) -> tuple[Detection, ...]:
        """The detections' events (a quick check first; the field-by-field one names the
        culprit when the quick one fails)."""
        events = []
        for i, item in enumerate(self.items(doc, "events", MAX_EVENTS)):
            events.append(self._quick_event(item) or self._event(item, f"events[{i}]."))
        return tuple(events)

    def _quick_event(self, item: dict) -> Detection | None:
        """The event when every field is of its usual type and in range, else None."""
        if item.keys() != EVENT_KEYS:
            return None
        home, device_type = item["home"], item["device_type"]
        first, detected, hit_time = item["first_seen"], item["detected"], item["hit_time"]
        hit_flow = item["hit_flow"]
        earliest, latest = self.rules.earliest_time, self.latest_time
        if (
            self._quick_text(home)
            and self._quick_type(device_type)
            and type(first) is float
            and type(detected) is float
            and type(hit_time) is float
            and type(hit_flow) is int
            and earliest <= first <= detected <= latest
            and abs(hit_time - (detected - first)) <= HIT_TIME_TOLERANCE
            and 1 <= hit_flow <= MAX_COUNT
        ):
            return Detection(home, device_type, first, detected, hit_time, hit_flow)
        return None

    def _event(self, item: dict, at: str) -> Detection:
        """One event checked field by field."""
        self.keys(item, EVENT_KEYS, at)
        first_seen = self.time(item, "first_seen", at + "first_seen")
        detected = self.time(item, "detected", at + "detected")
        if detected < first_seen:
            raise SummaryError(at + "detected", "earlier than first_seen")
        hit_time = self.number(item, "hit_time", at + "hit_time", 0.0, MAX_INT64)
        if abs(hit_time - (detected - first_seen)) > HIT_TIME_TOLERANCE:
            raise SummaryError(at + "hit_time", "differs from detected - first_seen")
        return Detection(
            home=self.text(item, "home", at + "home"),
            device_type=self.device_type(item, at + "device_type"),
            first_seen=first_seen,
            detected=detected,
            hit_time=hit_time,
            hit_flow=self.integer(item, "hit_flow", at + "hit_flow", 1, MAX_COUNT),
        )

    def _quick_text(self, value: object) -> bool:
        """Whether ``value`` passes ``text`` (without naming anything)."""
        return type(value) is str and 0 < len(value) <= MAX_TEXT and "\x00" not in value

    def _quick_type(self, value: object) -> bool:
        """Whether ``value`` passes ``device_type``."""
        known = self.rules.device_types
        return self._quick_text(value) and (known is None or value in known)

    def window(self, doc: dict) -> tuple[float, float]:
        """The trust window's start and end."""
        window = doc["window"]
        if not isinstance(window, dict):
            raise SummaryError("window", "must be a map")
        self.keys(window, {"start", "end"}, "window.")
        start = self.time(window, "start", "window.start")
        end = self.time(window, "end", "window.end")
        if not 0.0 <= end - start <= MAX_WINDOW_SECONDS:
            raise SummaryError(
                "window.end",
                f"must not precede start, nor follow it by more than {MAX_WINDOW_SECONDS:g} s",
            )
        return start, end

    def devices(self, doc: dict) -> tuple[DeviceTrust, ...]:
        """The trust summary's devices, one entry per device type."""
        devices, seen = [], set()
        for i, item in enumerate(self.items(doc, "devices", MAX_DEVICES)):
            at = f"devices[{i}]."
            device = self._quick_device(item) or self._device(item, at)
            if device.device_type in seen:
                raise SummaryError(at + "device_type", "repeated in this summary")
            seen.add(device.device_type)
            devices.append(device)
        return tuple(devices)

    def _quick_device(self, item: dict) -> DeviceTrust | None:
        """The entry when every field is of its usual type and in range, else None."""
        if item.keys() != DEVICE_KEYS:
            return None
        device_type, accepted, discarded = item["device_type"], item["accepted"], item["discarded"]
        raw_trust, trust = item["raw_trust"], item["trust"]
        if (
            self._quick_type(device_type)
            and type(accepted) is int
            and type(discarded) is int
            and type(raw_trust) is float
            and type(trust) is float
            and 0 <= accepted <= MAX_COUNT
            and 0 <= discarded <= MAX_COUNT
            and 0.0 <= raw_trust < math.inf
            and 0.0 <= trust <= 1.0
        ):
            return DeviceTrust(device_type, accepted, discarded, raw_trust, trust)
        return None

    def _device(self, item: dict, at: str) -> DeviceTrust:
        """One entry checked field by field."""
        self.keys(item, DEVICE_KEYS, at)
        return DeviceTrust(
            device_type=self.device_type(item, at + "device_type"),
            accepted=self.integer(item, "accepted", at + "accepted", 0, MAX_COUNT),
            discarded=self.integer(item, "discarded", at + "discarded", 0, MAX_COUNT),
            raw_trust=self.number(item, "raw_trust", at + "raw_trust", 0.0, math.inf),
            trust=self.number(item, "trust", at + "trust", 0.0, 1.0),
        )
