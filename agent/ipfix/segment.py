"""The fast messages of a burst finished together: one decoding call, then numpy.

``batch._Burst`` gathers the messages that take the fast path; between two messages
decoded alone, a ``Segment`` decodes all their flow data sets in one compiled call
(``flowplan.decode_jobs``), then does with arrays what ``Decoder.decode_message`` does
per message: rows per datagram, counters, errors of sets cut short, the uptime and
duration columns, and sequence-number tracking.
"""

import numpy as np

from agent.errors import DecodeError
from agent.ipfix import flowplan
from agent.ipfix.message import SET_HEADER_LENGTH

_MASK = 0xFFFFFFFF


class Segment:
    """The fast messages between two messages decoded alone, finished with numpy."""

    def __init__(self, burst, fast: np.ndarray, groups: np.ndarray):
        self.burst, self.decoder = burst, burst.decoder
        self.fast, self.groups = fast, groups
        self.msgs = msgs = burst.msgs[fast]
        self.plain = all(len(group.plans) == 1 and group.plans[0] >= 0 for group in burst.groups)
        if self.plain:
            plan_of_group = np.array([group.plans[0] for group in burst.groups], dtype=np.int64)
            self.msg_of_set = np.arange(len(fast))
            self.set_index = msgs["first_set"].astype(np.int64)
            self.set_plan = plan_of_group[groups]
            self.set_fixed = np.zeros(len(fast), dtype=np.int64)
            return
        nsets = msgs["nsets"].astype(np.int64)
        starts = np.zeros(len(fast), dtype=np.int64)
        np.cumsum(nsets[:-1], out=starts[1:])
        total = int(nsets.sum())
        self.msg_of_set = np.repeat(np.arange(len(fast)), nsets)
        within = np.arange(total) - starts[self.msg_of_set]
        self.set_index = msgs["first_set"].astype(np.int64)[self.msg_of_set] + within

        pattern_plans, pattern_fixed, pattern_start = [], [], []
        for group in burst.groups:
            pattern_start.append(len(pattern_plans))
            pattern_plans.extend(group.plans)
            pattern_fixed.extend(group.fixed)
        code = np.array(pattern_start, dtype=np.int64)[groups][self.msg_of_set] + within
        self.set_plan = np.array(pattern_plans, dtype=np.int64).reshape(-1)[code]
        self.set_fixed = np.array(pattern_fixed, dtype=np.int64).reshape(-1)[code]

    def finish(self) -> None:
        """Decode the flow sets, then count, fix and track what the messages held."""
        burst, n = self.burst, len(self.fast)
        sets = burst.sets[self.set_index]
        is_flow = self.set_plan >= 0
        job_msg = self.msg_of_set[is_flow]
        rows = errors = np.zeros(0, dtype=np.int64)
        jobs = np.zeros(0, dtype=flowplan.JOB_DTYPE)
        if is_flow.any():
            jobs = np.zeros(int(is_flow.sum()), dtype=flowplan.JOB_DTYPE)
            jobs["off"], jobs["len"] = sets["off"][is_flow], sets["len"][is_flow]
            jobs["domain"] = self.msgs["domain"][job_msg]
            jobs["plan"] = self.set_plan[is_flow]
            flows = flowplan.decode_jobs(burst.buf, jobs, burst.plan_list)
            rows, errors = jobs["rows"].astype(np.int64), jobs["error"]
            burst.parts.append(flows)
            self._fix_rows(flows, jobs, job_msg)

        good = errors == 0
        others = ~is_flow
        if self.plain:
            made, counted, broken = rows, rows * good, ~good
        else:
            made = np.bincount(job_msg, weights=rows, minlength=n).astype(np.int64)
            counted = np.bincount(job_msg, weights=rows * good, minlength=n).astype(np.int64)
            broken = np.bincount(job_msg, weights=~good, minlength=n) > 0
        if not self.plain and others.any():
            fixed = self.set_fixed[others]
            lengths = sets["len"][others].astype(np.int64)
            quotient = np.floor_divide(lengths, np.maximum(fixed, 1)) * (fixed > 0)
            counted += np.bincount(self.msg_of_set[others], weights=quotient, minlength=n).astype(
                np.int64
            )
            broken |= np.bincount(self.msg_of_set[others], weights=fixed == 0, minlength=n) > 0
        burst.result.counts[self.fast] = made
        set_ids = sets["set_id"][is_flow]
        for k in np.flatnonzero(~good).tolist():
            self._job_failed(jobs[k], int(job_msg[k]), int(set_ids[k]))

        count = self.decoder.count
        count("messages", n)
        tpls = int(np.array([g.tpls for g in burst.groups])[self.groups].sum())
        if tpls:
            count("templates", tpls)
        if good.any() or not self.plain and others.any():
            count("data_records", int(counted.sum()))
        count("flow_records", int(made.sum()))
        mismatched = self._mismatches(sets, is_flow, good)
        if mismatched:
            count("set_length_mismatch", mismatched)
        self._track_sequence(counted, ~broken)

    def _mismatches(self, sets: np.ndarray, is_flow: np.ndarray, good: np.ndarray) -> int:
        """Sets of fixed-length records with non-zero octets after the last record."""
        burst = self.burst
        fixed_plans = any(p.fixed_length for p in burst.plan_list)
        if not fixed_plans and not self.set_fixed.any():
            return 0
        fixed = self.set_fixed.copy()
        if is_flow.any():
            of_plan = np.array([p.fixed_length or 0 for p in burst.plan_list], dtype=np.int64)
            fixed[is_flow] = of_plan[self.set_plan[is_flow]] * good
        found = 0
        for k in np.flatnonzero(fixed).tolist():
            off, size, length = int(sets["off"][k]), int(sets["len"][k]), int(fixed[k])
            found += any(burst.buf[off + size - size % length : off + size])
        return found

    def _fix_rows(self, flows: np.ndarray, jobs: np.ndarray, job_msg: np.ndarray) -> None:
        """Uptime and duration columns as ``Decoder._finish_rows`` makes them, for the
        sets decoded without error (those cut short keep their rows untouched)."""
        plans = self.burst.plan_list
        if not any(p.uptime or p.duration for p in plans):
            return
        job_of_row = np.repeat(np.arange(len(jobs)), jobs["rows"])
        for p, plan in enumerate(plans):
            if not (plan.uptime or plan.duration):
                continue
            clean = np.flatnonzero((jobs["plan"] == p) & (jobs["error"] == 0))
            if not len(clean):
                continue
            fix = (jobs["plan"][job_of_row] == p) & (jobs["error"][job_of_row] == 0)
            group = self.burst.groups[int(self.groups[job_msg[clean[0]]])]
            export = self.msgs["export_time"][job_msg[job_of_row[fix]]].astype(np.int64)
            part = flows[fix]
            self.decoder._finish_rows(part, plan, group.session, group.domain, export)
            flows[fix] = part

    def _job_failed(self, job, m: int, set_id: int) -> None:
        burst, i = self.burst, int(self.fast[m])
        group = burst.groups[int(self.groups[m])]
        result = self.decoder._empty_result()
        exc = DecodeError(flowplan.error_reason(int(job["error"])))
        at = int(job["off"]) - SET_HEADER_LENGTH - int(burst.offsets[i])
        self.decoder._data_set_failed(exc, at, group.session, group.domain, set_id, result)
        errors = burst.result.errors
        if not errors or errors[-1][0] != i:
            errors.append((i, result.error))

    def _one_stream(self, key, sequence: np.ndarray, counted: np.ndarray, complete) -> bool:
        """The common case of one stream continuing in order; False if it does not."""
        expected = self.decoder._next_sequence
        if not complete.all() or expected.get(key) != int(sequence[0]):
            return False
        if not ((sequence[:-1] + counted[:-1]) & _MASK == sequence[1:]).all():
            return False
        expected[key] = (int(sequence[-1]) + int(counted[-1])) & _MASK
        return True

    def _track_sequence(self, counted: np.ndarray, complete: np.ndarray) -> None:
        """``Decoder._track_sequence`` for every message; vectorized when every stream
        continues exactly where it was expected to (no loss, no reordering)."""
        decoder, burst = self.decoder, self.burst
        sequence = self.msgs["sequence"].astype(np.int64)
        keys = [(g.session, g.domain) for g in burst.groups]
        if len(set(keys)) == 1 and self._one_stream(keys[0], sequence, counted, complete):
            return
        key_of_group: dict = {}
        group_key = np.array(
            [key_of_group.setdefault(k, len(key_of_group)) for k in keys], dtype=np.int64
        )
        key_id = group_key[self.groups]
        order = np.argsort(key_id, kind="stable")
        k, s, c = key_id[order], sequence[order], counted[order]
        head = np.ones(len(order), dtype=bool)
        head[1:] = k[1:] != k[:-1]
        follows = (s[:-1] + c[:-1]) & _MASK == s[1:]
        ok = bool(complete.all()) and bool((follows | head[1:]).all())
        unique = list(key_of_group)
        expected = decoder._next_sequence
        if ok:
            for pos in np.flatnonzero(head).tolist():
                if expected.get(unique[int(k[pos])]) != int(s[pos]):
                    ok = False
                    break
        if ok:
            tail = np.ones(len(order), dtype=bool)
            tail[:-1] = head[1:]
            for pos in np.flatnonzero(tail).tolist():
                expected[unique[int(k[pos])]] = (int(s[pos]) + int(c[pos])) & _MASK
            return
        for m in range(len(self.fast)):
            group = burst.groups[int(self.groups[m])]
            decoder._track_sequence(
                group.session, group.domain, int(sequence[m]), int(counted[m]), bool(complete[m])
            )
