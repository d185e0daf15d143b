"""The decoder: one IPFIX message in, its flow records (and more) out, never an exception.

``Decoder.decode_message`` reads the header, keeps templates per (transport session,
observation domain), decodes data sets of flow templates into ``FLOW_DTYPE`` rows through
``flowplan``, reads options records (and, on request, every record) into dicts, and
tracks sequence numbers. Bad input ends up in ``result.error`` and in ``counters``,
keyed by a short reason, so a receive loop can keep going.
"""

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from agent.errors import DecodeError, MissingTemplateError, TemplateError
from agent.flows import FLOW_DTYPE
from agent.ipfix import batch, flowplan
from agent.ipfix.message import iter_sets, parse_header
from agent.ipfix.structured import RecordReader
from agent.ipfix.templates import (
    MIN_DATA_SET_ID,
    OPTIONS_TEMPLATE_SET_ID,
    TEMPLATE_SET_ID,
    Template,
    TemplateStore,
    parse_template_set_cached,
)

log = logging.getLogger(__name__)

_MOD = 1 << 32
_NO_FLOWS = np.zeros(0, dtype=FLOW_DTYPE)
#: (session, domain) pairs whose sequence numbers are followed; the oldest is dropped.
_MAX_STREAMS = 65536
_LOG_EVERY = 1000


@dataclass
class MessageResult:
    """What one message held; ``error`` is the first problem met, ``errors`` all of them."""

    flows: np.ndarray
    records: list[dict] | None = None
    options: list[dict] = field(default_factory=list)
    export_time: int | None = None
    sequence: int | None = None
    domain: int | None = None
    error: DecodeError | None = None
    errors: list[DecodeError] = field(default_factory=list)


class Decoder:
    """Decodes IPFIX messages of any number of exporters; one per process."""

    def __init__(self, template_lifetime: float = 1800.0, max_templates_per_session: int = 4096):
        self.templates = TemplateStore(template_lifetime, max_templates_per_session)
        self.counters: dict[str, int] = {}
        self._next_sequence: dict[tuple, int] = {}
        self._uptime_base: dict[tuple, int] = {}
        self._logged: dict[tuple, int] = {}
        self._streams: dict[tuple, object] = {}
        #: Decode runs of flow data sets in one compiled call (off: set by set, for tests).
        self.join_sets = True

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a named counter."""
        self.counters[name] = self.counters.get(name, 0) + n

    def forget_session(self, session) -> None:
        """Drop a session's templates and sequence state (its TCP connection closed)."""
        self.templates.forget_session(session)
        for table in (self._next_sequence, self._uptime_base, self._streams):
            for key in [k for k in table if k[0] == session]:
                del table[key]

    def decode_message(self, buf, session, *, records: bool = False, now: float | None = None):
        """Decode one message from ``session``; see ``MessageResult``. Never raises.

        ``session`` is any hashable naming the transport session (a tuple starting with
        ``"udp"`` makes templates age out); ``now`` is seconds on any steady clock for
        that lifetime (default ``time.monotonic()``); ``records`` also returns every
        data record as a dict.
        """
        result = MessageResult(flows=_NO_FLOWS)
        result.records = [] if records else None
        try:
            self._decode(memoryview(buf), session, records, now, result)
        except Exception as exc:
            log.exception("ipfix decoder failed session=%s", session)
            self._fail(result, session, "internal_error", DecodeError(f"decoder failure: {exc}"))
        return result

    def decode_datagrams(self, datagrams, sessions, *, now: float | None = None):
        """Decode a burst of messages (UDP datagrams) in one go; see ``batch.BatchResult``.

        The same as ``decode_message`` on each datagram in order, with ``sessions[i]`` the
        session of ``datagrams[i]`` and one ``now`` for the burst (default
        ``time.monotonic()``): the same rows, counters, template store and sequence
        state, but messages that repeat known templates skip Python's per-message work.
        Never raises on bad input.
        """
        now = time.monotonic() if now is None else now
        return batch.decode_datagrams(self, datagrams, sessions, now)

    def plan_for(self, session, domain: int, template: Template) -> flowplan.FlowPlan:
        """The compiled flow plan of a stored flow template, kept until templates change."""
        cache = self.templates.domain(session, domain).cache()
        cached = cache.get(template.template_id)
        if cached is None or cached[0] is not template:
            table = self.templates.domain(session, domain)
            subs = {tid: t for tid, (t, _) in table.templates.items()}
            cached = cache[template.template_id] = (
                template,
                flowplan.compile_plan(template, subs),
            )
        return cached[1]

    @staticmethod
    def _empty_result() -> MessageResult:
        return MessageResult(flows=_NO_FLOWS)

    def _decode(self, buf, session, records: bool, now, result: MessageResult) -> None:
        now = time.monotonic() if now is None else now
        self.count("messages")
        try:
            header = parse_header(buf)
        except DecodeError as exc:
            self._fail(result, session, "bad_header", exc)
            return
        result.export_time, result.sequence = header.export_time, header.sequence
        result.domain = domain = header.domain
        if header.length < len(buf):
            self.count("trailing_octets")
        expired = self.templates.expire(session, domain, now)
        if expired:
            self.count("templates_expired", expired)

        flows, counted, complete = [], 0, True
        pending: list[tuple] = []
        try:
            for set_id, pos, size in iter_sets(buf, header.length):
                if set_id >= MIN_DATA_SET_ID and result.records is None and self.join_sets:
                    template = self.templates.get(session, domain, set_id, now)
                    if template is not None and template.is_flow:
                        pending.append((set_id, pos, size, template))
                        continue
                if pending:
                    n, ok = self._flow_sets(buf, pending, session, domain, flows, result)
                    counted, complete, pending = counted + n, complete and ok, []
                body = buf[pos : pos + size]
                if set_id in (TEMPLATE_SET_ID, OPTIONS_TEMPLATE_SET_ID):
                    self._template_set(body, set_id, session, domain, now, result)
                elif set_id >= MIN_DATA_SET_ID:
                    n = self._data_set(body, set_id, pos, session, domain, now, flows, result)
                    counted += n or 0
                    complete = complete and n is not None
                else:
                    self._fail(result, session, "reserved_set_id", DecodeError(
                        f"set id {set_id} at message octet {pos - 4} is reserved", domain=domain
                    ))  # fmt: skip
        except DecodeError as exc:
            if pending:
                n, _ = self._flow_sets(buf, pending, session, domain, flows, result)
                counted, pending = counted + n, []
            exc.domain = domain
            self._fail(result, session, "bad_set", exc)
            complete = False
        if pending:
            n, ok = self._flow_sets(buf, pending, session, domain, flows, result)
            counted, complete = counted + n, complete and ok

        if flows:
            result.flows = flowplan.concat_flows(flows)
            result.flows["observationDomainId"] = domain
        self.count("flow_records", len(result.flows))
        self._track_sequence(session, domain, header.sequence, counted, complete)

    def _template_set(self, body, set_id, session, domain, now, result) -> None:
        try:
            parsed = parse_template_set_cached(body, set_id)
        except TemplateError as exc:
            parsed = exc.parsed
            exc.domain = domain
            self._fail(result, session, exc.code, exc)
        for tid, template in parsed:
            if template is None:
                self.count("template_withdrawals")
                self.templates.withdraw(session, domain, tid, set_id)
                continue
            try:
                state = self.templates.add(session, domain, template, now)
            except TemplateError as exc:
                self._fail(result, session, exc.code, exc)
                continue
            self.count("templates" if state != "redefined" else "template_redefinitions")

    def _flow_sets(self, buf, pending, session, domain, flows, result) -> tuple[int, bool]:
        """Data sets of flow templates met in a row, decoded in one compiled call.

        A file or TCP message from YAF holds many short sets (its layout changes between
        biflow and uniflow records, and each change starts a set), so per-set Python work
        would cost more than the records. The outcome is that of ``_data_set`` on each:
        (records counted, whether every set decoded cleanly).
        """
        if len(pending) == 1:
            set_id, pos, size, template = pending[0]
            body = buf[pos : pos + size]
            n = self._data_set(body, set_id, pos, session, domain, None, flows, result, template)
            return n or 0, n is not None

        plans, plan_of, which = [], {}, []
        for _, _, _, template in pending:
            plan = self.plan_for(session, domain, template)
            which.append(plan_of.setdefault(id(plan), len(plan_of)))
            if len(plans) < len(plan_of):
                plans.append(plan)
        jobs = np.zeros(len(pending), dtype=flowplan.JOB_DTYPE)
        jobs["off"] = [item[1] for item in pending]
        jobs["len"] = [item[2] for item in pending]
        jobs["domain"], jobs["plan"] = domain, which
        rows = flowplan.decode_jobs(buf, jobs, plans)
        flows.append(rows)

        clean = jobs["error"] == 0
        if any(plan.uptime or plan.duration for plan in plans):
            job_of_row = np.repeat(np.arange(len(jobs)), jobs["rows"])
            for p, plan in enumerate(plans):
                fix = ((jobs["plan"] == p) & clean)[job_of_row]
                if (plan.uptime or plan.duration) and fix.any():
                    part = rows[fix]
                    self._finish_rows(part, plan, session, domain, result.export_time)
                    rows[fix] = part
        for k in np.flatnonzero(~clean).tolist():
            exc = DecodeError(flowplan.error_reason(int(jobs["error"][k])))
            set_id, pos = pending[k][0], pending[k][1]
            self._data_set_failed(exc, pos - 4, session, domain, set_id, result)
        counted = int(jobs["rows"][clean].sum())
        self.count("data_records", counted)
        for k in np.flatnonzero(clean).tolist():
            _, pos, size, template = pending[k]
            fixed = template.fixed_length
            if fixed and any(buf[pos + size - size % fixed : pos + size]):
                self.count("set_length_mismatch")
        return counted, bool(clean.all())

    def _data_set(
        self, body, set_id, pos, session, domain, now, flows, result, template=None
    ) -> int | None:
        template = template or self.templates.get(session, domain, set_id, now)
        if template is None:
            self._fail(result, session, "missing_template", MissingTemplateError(
                f"data set at message octet {pos - 4} has no template",
                domain=domain, template_id=set_id,
            ))  # fmt: skip
            return None
        counted = None
        try:
            if template.is_flow:
                rows = self._flow_rows(body, template, session, domain, result.export_time)
                flows.append(rows)
                counted = len(rows)
            elif not template.is_options and result.records is None:
                fixed = template.fixed_length
                counted = len(body) // fixed if fixed else None
            if template.is_options or result.records is not None:
                dicts = self._read_dicts(body, template, session, domain, now)
                counted = len(dicts)
                if template.is_options:
                    self._options(dicts, session, domain, result)
                elif result.records is not None:
                    result.records.extend(dicts)
        except DecodeError as exc:
            if getattr(exc, "rows", None) is not None and len(exc.rows):
                flows.append(exc.rows)
            self._data_set_failed(exc, pos - 4, session, domain, set_id, result)
            return None
        self.count("data_records", counted or 0)
        if template.fixed_length and any(body[len(body) - len(body) % template.fixed_length :]):
            self.count("set_length_mismatch")
        return counted

    def _data_set_failed(self, exc: DecodeError, at: int, session, domain, set_id, result):
        """Count and record a data set that could not be decoded (from message octet ``at``)."""
        exc.domain, exc.template_id = domain, set_id
        exc.reason = f"{exc.reason} in data set at message octet {at}"
        self._fail(result, session, _data_code(exc.reason), exc)

    def _flow_rows(self, body, template: Template, session, domain, export_time) -> np.ndarray:
        plan = self.plan_for(session, domain, template)
        try:
            rows = flowplan.decode_flows(body, plan)
        except ValueError as exc:
            error = DecodeError(str(exc))
            error.code = "bad_data_set"
            error.rows = getattr(exc, "rows", None)
            raise error from None
        self._finish_rows(rows, plan, session, domain, export_time)
        return rows

    def _finish_rows(self, rows: np.ndarray, plan, session, domain, export_time) -> None:
        if plan.ip_version >= 0:
            rows["ipVersion"] = plan.ip_version
        if plan.uptime:
            base = self._uptime_base.get((session, domain))
            if base is None:
                self.count("flows_relative_time", len(rows))
            else:
                for column in plan.uptime:
                    rows[column] = _absolute_uptime(rows[column], base, export_time)
        if plan.duration == "flowDurationMilliseconds":
            rows["flowEndMilliseconds"] += rows["flowStartMilliseconds"]
        elif plan.duration == "flowDurationMicroseconds":
            rows["flowEndMilliseconds"] //= 1000
            rows["flowEndMilliseconds"] += rows["flowStartMilliseconds"]

    def _read_dicts(self, body, template, session, domain, now) -> list[dict]:
        reader = RecordReader(lambda tid: self.templates.get(session, domain, tid, now))
        dicts = reader.read_set(body, 0, len(body), template)
        if reader.missing_subtemplates:
            self.count("missing_subtemplate", reader.missing_subtemplates)
        return dicts

    def _options(self, dicts: list[dict], session, domain, result) -> None:
        self.count("options_records", len(dicts))
        result.options.extend(dicts)
        for record in dicts:
            init = record.get("systemInitTimeMilliseconds")
            if init is not None and hasattr(init, "timestamp"):
                self._uptime_base[(session, domain)] = round(init.timestamp() * 1000)

    def _track_sequence(self, session, domain, sequence, counted, complete) -> None:
        """RFC 7011: the header's sequence number counts the data records sent before it.

        A jump forward is counted as lost records; a jump back as a reordered message
        (its records, counted lost before, are taken back), except a restart at 0.
        """
        key = (session, domain)
        expected = self._next_sequence.get(key)
        if expected is not None and sequence != expected:
            gap = (sequence - expected) % _MOD
            if gap < _MOD // 2:
                self.count("records_lost", gap)
            elif sequence != 0:
                self.count("messages_reordered")
                lost = self.counters.get("records_lost", 0)
                self.counters["records_lost"] = max(0, lost - counted)
                return
            else:
                self.count("sequence_restarts")
        if complete:
            if key not in self._next_sequence and len(self._next_sequence) >= _MAX_STREAMS:
                del self._next_sequence[next(iter(self._next_sequence))]
            self._next_sequence[key] = (sequence + counted) % _MOD
        else:
            self._next_sequence.pop(key, None)

    def _fail(self, result: MessageResult, session, code: str, error: DecodeError) -> None:
        error.code = code
        if error.exporter is None:
            error.exporter = _exporter(session)
        error.args = (error._describe(),)
        result.errors.append(error)
        if result.error is None:
            result.error = error
        self.count("error_" + code)
        seen = self._logged.get((session, code), 0)
        self._logged[(session, code)] = seen + 1
        if len(self._logged) > 10000:
            self._logged.clear()
        if seen % _LOG_EVERY == 0:
            log.warning("ipfix decode error=%s count=%d %s", code, seen + 1, error)


def _absolute_uptime(uptime: np.ndarray, base: int, export_time: int) -> np.ndarray:
    """sysUpTime milliseconds (a 32-bit counter) as Unix milliseconds.

    The counter wraps every 2**32 ms (49.7 days) and some exporters write times before
    their init time modulo 2**32, so the wrap count is the one that puts the time
    nearest the message's export time.
    """
    times = uptime.astype(np.int64) + base
    wraps = np.rint((export_time * 1000 - times) / 2**32).astype(np.int64)
    return times + wraps * 2**32


_DATA_CODES = (
    ("semantic", "unknown_list_semantic"),
    ("nested", "nesting_too_deep"),
    ("variable-length", "varlen_past_end"),
    ("list", "bad_list"),
)


def _data_code(reason: str) -> str:
    for word, code in _DATA_CODES:
        if word in reason:
            return code
    return "bad_data_set"


def _exporter(session) -> str:
    if isinstance(session, tuple) and len(session) >= 2:
        return ":".join(str(part) for part in session[1:])
    return str(session)
