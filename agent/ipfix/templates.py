"""Templates (RFC 7011 section 3.4) and the store that keeps them per exporter.

The store is keyed by (transport session, observation domain id, template id), as the
RFC demands: the same template id from two domains of one exporter names two templates.
It handles withdrawal (field count 0), redefinition, a lifetime for templates received
over UDP (sessions whose key is a tuple starting with ``"udp"``), and a cap on the
templates one session may hold, so a template flood cannot grow memory without bound.
"""

import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from agent.errors import TemplateError
from agent.ipfix.elements import LIST_TYPES, VARLEN, Element, lookup

TEMPLATE_SET_ID = 2
OPTIONS_TEMPLATE_SET_ID = 3
MIN_DATA_SET_ID = 256
MAX_FIELDS = 512
#: Template sets kept parsed, by their octets (exporters repeat the same ones over UDP),
#: and the longest set kept: memory stays under a few megabytes.
PARSED_CACHE_SIZE = 256
PARSED_CACHE_MAX_OCTETS = 8192

#: Element names that make a template's data records flow records.
FLOW_KEY_NAMES = frozenset(
    {
        "sourceIPv4Address", "destinationIPv4Address", "sourceIPv6Address",
        "destinationIPv6Address", "sourceTransportPort", "destinationTransportPort",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Field:
    """A template field: its element and its length in the record (0xFFFF: varlen)."""

    element: Element
    length: int


@dataclass(eq=False)
class Template:
    """A template or options template; ``scope_count`` is 0 for a plain template."""

    template_id: int
    fields: tuple[Field, ...]
    scope_count: int = 0
    min_length: int = field(init=False)
    fixed_length: int | None = field(init=False)
    is_flow: bool = field(init=False)
    has_lists: bool = field(init=False)

    def __post_init__(self):
        varlen = [f.length == VARLEN for f in self.fields]
        self.min_length = sum(1 if v else f.length for v, f in zip(varlen, self.fields))
        self.fixed_length = None if any(varlen) else self.min_length
        names = {f.element.name for f in self.fields}
        self.is_flow = self.scope_count == 0 and bool(names & FLOW_KEY_NAMES)
        self.has_lists = any(f.element.type in LIST_TYPES for f in self.fields)

    @property
    def is_options(self) -> bool:
        """True for an options template (one with scope fields)."""
        return self.scope_count > 0

    def same_layout(self, other: "Template") -> bool:
        """True when both templates describe the same record layout."""
        if self is other:
            return True
        return self.scope_count == other.scope_count and self.fields == other.fields


def parse_template_set(body: memoryview, set_id: int) -> list[tuple[int, Template | None]]:
    """Template records of one (options) template set; ``None`` marks a withdrawal.

    Raises ``TemplateError`` for a record that cannot be used; records before it in the
    set are returned through the error's ``parsed`` attribute.
    """
    out: list[tuple[int, Template | None]] = []
    pos, end = 0, len(body)
    header = 6 if set_id == OPTIONS_TEMPLATE_SET_ID else 4
    while end - pos >= 4:
        tid, count = struct.unpack_from("!HH", body, pos)
        if tid == 0 and not any(body[pos:]):
            break
        if tid < MIN_DATA_SET_ID and not (count == 0 and tid == set_id):
            _fail(out, f"template id {tid} is below 256", tid)
        if count == 0:
            out.append((tid, None))
            pos += 4
            continue
        if end - pos < header:
            _fail(out, "options template header past end of set", tid)
        scope = struct.unpack_from("!H", body, pos + 4)[0] if header == 6 else 0
        if header == 6 and not 0 < scope <= count:
            _fail(out, f"options template scope count {scope} not in 1..{count}", tid)
        if count > MAX_FIELDS:
            _fail(out, f"template has {count} fields, more than {MAX_FIELDS}", tid)
        pos += header
        fields = []
        for _ in range(count):
            if end - pos < 4:
                _fail(out, "template field specifier past end of set", tid)
            eid, length = struct.unpack_from("!HH", body, pos)
            pos += 4
            pen = 0
            if eid & 0x8000:
                if end - pos < 4:
                    _fail(out, "enterprise number past end of set", tid)
                pen = struct.unpack_from("!I", body, pos)[0]
                pos += 4
            fields.append(Field(lookup(pen, eid & 0x7FFF), length))
        template = Template(tid, tuple(fields), scope)
        if template.min_length == 0:
            _fail(out, "template describes zero-length records", tid)
        out.append((tid, template))
    return out


_parsed: OrderedDict[tuple[int, bytes], list] = OrderedDict()


def parse_template_set_cached(body, set_id: int) -> list[tuple[int, Template | None]]:
    """``parse_template_set`` remembering the last sets parsed without error, by octets.

    The same ``Template`` objects come back for the same octets; they are read-only once
    parsed, so sessions may share them.
    """
    if len(body) > PARSED_CACHE_MAX_OCTETS:
        return parse_template_set(body, set_id)
    key = (set_id, bytes(body))
    parsed = _parsed.get(key)
    if parsed is not None:
        _parsed.move_to_end(key)
        return parsed
    parsed = parse_template_set(body, set_id)
    _parsed[key] = parsed
    if len(_parsed) > PARSED_CACHE_SIZE:
        _parsed.popitem(last=False)
    return parsed


def _fail(parsed: list, reason: str, tid: int) -> None:
    error = TemplateError(reason, template_id=tid)
    error.code = "bad_template"
    error.parsed = parsed
    raise error


@dataclass(eq=False)
class _Domain:
    """One (session, domain)'s templates; ``generation`` changes whenever they change."""

    templates: dict[int, tuple[Template, float]] = field(default_factory=dict)
    generation: int = 0
    _cache: dict = field(default_factory=dict)
    _cache_generation: int = 0

    def cache(self) -> dict:
        """Scratch space for what depends on these templates (compiled plans); emptied
        whenever the templates change."""
        if self._cache_generation != self.generation:
            self._cache.clear()
            self._cache_generation = self.generation
        return self._cache


class TemplateStore:
    """Templates by (session, observation domain, template id), bounded per session."""

    def __init__(self, lifetime: float = 1800.0, max_per_session: int = 4096):
        self.lifetime = lifetime
        self.max_per_session = max_per_session
        self._domains: dict[tuple, _Domain] = {}
        self._per_session: dict[object, int] = {}

    @staticmethod
    def expires(session) -> bool:
        """True for sessions whose templates age out (UDP, RFC 7011 section 8.4)."""
        return isinstance(session, tuple) and bool(session) and session[0] == "udp"

    def domain(self, session, domain: int) -> _Domain:
        """The (possibly new, empty) template table of one session and domain."""
        key = (session, domain)
        table = self._domains.get(key)
        if table is None:
            table = self._domains[key] = _Domain()
        return table

    def add(self, session, domain: int, template: Template, now: float) -> str:
        """Store a template; returns "new", "same" or "redefined".

        Raises ``TemplateError`` when the session already holds its cap of templates.
        """
        table = self.domain(session, domain)
        old = table.templates.get(template.template_id)
        if old is None:
            if self._per_session.get(session, 0) >= self.max_per_session:
                error = TemplateError(
                    f"session holds {self.max_per_session} templates, the cap",
                    domain=domain,
                    template_id=template.template_id,
                )
                error.code = "template_cap"
                raise error
            self._per_session[session] = self._per_session.get(session, 0) + 1
        if old is not None and old[0].same_layout(template):
            table.templates[template.template_id] = (old[0], now)
            return "same"
        table.templates[template.template_id] = (template, now)
        table.generation += 1
        return "new" if old is None else "redefined"

    def withdraw(self, session, domain: int, template_id: int, set_id: int) -> int:
        """Withdraw one template, or all of a set's kind when ``template_id == set_id``."""
        table = self._domains.get((session, domain))
        if table is None:
            return 0
        if template_id == set_id:
            options = set_id == OPTIONS_TEMPLATE_SET_ID
            doomed = [t for t, (tpl, _) in table.templates.items() if tpl.is_options == options]
        else:
            doomed = [template_id] if template_id in table.templates else []
        for tid in doomed:
            del table.templates[tid]
        if doomed:
            table.generation += 1
            self._per_session[session] -= len(doomed)
        return len(doomed)

    def get(self, session, domain: int, template_id: int, now: float) -> Template | None:
        """The live template, or None (unknown, or expired for a UDP session)."""
        table = self._domains.get((session, domain))
        if table is None:
            return None
        entry = table.templates.get(template_id)
        if entry is None:
            return None
        if self.expires(session) and now - entry[1] > self.lifetime:
            return None
        return entry[0]

    def expire(self, session, domain: int, now: float) -> int:
        """Drop a UDP session's templates older than the lifetime; returns how many."""
        table = self._domains.get((session, domain))
        if table is None or not self.expires(session):
            return 0
        old = [t for t, (_, seen) in table.templates.items() if now - seen > self.lifetime]
        for tid in old:
            del table.templates[tid]
        if old:
            table.generation += 1
            self._per_session[session] -= len(old)
        return len(old)

    def forget_session(self, session) -> None:
        """Drop every template of a session (a closed TCP connection)."""
        for key in [k for k in self._domains if k[0] == session]:
            self._domains.pop(key).generation = -1
        self._per_session.pop(session, None)

    def count(self, session) -> int:
        """Templates held for a session, over all its observation domains."""
        return self._per_session.get(session, 0)
