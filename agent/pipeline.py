"""The agent's data path over one batch of decoded flows, shared by the daemon and replay.

    flows -> remote_mask -> homes -> feature_matrix -> score (one predictor call)
          -> inventory (detection events) and trust (window counts) -> summaries

Flows without a home here (outside the subscriber prefixes, started from outside, or
over the homes cap) are counted and not scored. Every step works on whole arrays.

Trust windows move on in one of two ways: by flow end times (``by_flow_time``, replay),
or by ``roll(now)`` from the daemon's clock.
"""

import logging

import numpy as np

from agent.features import feature_matrix, remote_mask
from agent.flows import FLOW_DTYPE
from agent.inventory import Inventory
from agent.score import score
from agent.trust import Trust

log = logging.getLogger(__name__)


class Pipeline:
    """Scores batches and keeps inventories and trust windows for the homes."""

    def __init__(
        self,
        bundle,
        homes,
        summaries,
        metrics,
        *,
        method="lambda1",
        window: float | None = None,
        by_flow_time: bool = False,
    ):
        self.bundle = bundle
        self.homes = homes
        self.summaries = summaries
        self.metrics = metrics
        self.method = method
        self.by_flow_time = by_flow_time
        self.window = float(window or bundle.window_seconds)
        self.inventory = Inventory(bundle.classes, homes.max_homes)
        self.trust = Trust(
            bundle.classes,
            bundle.baselines_for(method),
            bundle.window_seconds,
            self.window,
            homes.max_homes,
        )
        self.window_end: float | None = None
        metrics.gauge("homes", lambda: len(homes))

    def process(self, flows: np.ndarray) -> None:
        """Run one batch of decoded flows through the whole data path."""
        if len(flows) == 0:
            return
        remote = remote_mask(flows)
        n_remote = int(np.count_nonzero(remote))
        self.metrics.inc("local", len(flows) - n_remote)
        if n_remote < len(flows):
            flows = flows[remote]
        self.metrics.inc("remote", len(flows))

        assignment = self.homes.assign(flows)
        self.metrics.inc("outside_prefixes", assignment.outside)
        self.metrics.inc("inbound", assignment.inbound)
        self.metrics.inc("homes_over_cap", assignment.over_cap)
        slot = assignment.slot
        if assignment.outside or assignment.inbound or assignment.over_cap:
            kept = slot >= 0
            flows, slot = flows[kept], slot[kept]
        if len(flows) == 0:
            return

        label, _, accepted = score(self.bundle, feature_matrix(flows), self.method)
        n_accepted = int(np.count_nonzero(accepted))
        self.metrics.inc("scored", len(flows))
        self.metrics.inc("accepted", n_accepted)
        self.metrics.inc("discarded", len(flows) - n_accepted)

        start = flows["flowStartMilliseconds"] / 1000.0
        end = flows["flowEndMilliseconds"] / 1000.0
        new = self.inventory.update(slot, label, accepted, start, end)
        if new:
            self.metrics.inc("detections", len(new))
            ids = self.homes.ids
            self.summaries.add_events([self.inventory.event(s, c, ids[s]) for s, c in new])

        if self.by_flow_time:
            self._add_by_flow_time(slot, label, accepted, end)
        else:
            self.trust.add(slot, label, accepted)

    def _add_by_flow_time(self, slot, label, accepted, end) -> None:
        """Count each flow into the window of its end time, closing windows as they pass."""
        if self.window_end is None:
            self.begin(self.trust.window_of(float(end.min())))
        while len(slot):
            now = end < self.window_end
            self.trust.add(slot[now], label[now], accepted[now])
            slot, label, accepted, end = slot[~now], label[~now], accepted[~now], end[~now]
            if len(slot):
                self.close_window(self.window_end)
                self.begin(self.trust.window_of(float(end.min())))

    def begin(self, t: float) -> None:
        """Open a trust window at ``t``, ending at the next aligned boundary."""
        self.trust.begin(t)
        self.window_end = self.trust.window_of(t) + self.window

    def roll(self, now: float) -> None:
        """Close the window if the clock passed its end (daemon)."""
        if self.window_end is None:
            self.begin(now)
        elif now >= self.window_end:
            self.close_window(self.window_end)
            self.begin(max(self.window_end, self.trust.window_of(now)))

    def close_window(self, end: float) -> None:
        """Emit the pending detections, then one trust summary per active home."""
        self.summaries.flush_detections()
        closed = self.trust.close(end, self.inventory)
        ids = self.homes.ids
        self.summaries.emit_trust([(ids[slot], window, devs) for slot, window, devs in closed])

    def finish(self, end: float | None = None) -> None:
        """Close the open window (at ``end``, or its aligned end) and flush detections."""
        if self.window_end is not None:
            self.close_window(self.window_end if end is None else min(end, self.window_end))
            self.window_end = None
        self.summaries.flush_detections()

    def set_bundle(self, bundle, now: float | None) -> None:
        """Switch models: close the window under the old one, then remap state by name."""
        if now is not None and self.window_end is not None:
            self.close_window(min(now, self.window_end))
            self.begin(now)
        self.bundle = bundle
        self.inventory.remap(bundle.classes)
        self.trust.remap(bundle.classes, bundle.baselines_for(self.method), bundle.window_seconds)
        self.summaries.model = bundle.digest


class Batcher:
    """Collects decoded flows until ``batch_size`` rows, then hands them on as one batch.

    Rows are copied into one preallocated table as they come, as raw octets (assigning
    or concatenating structured arrays goes field by field and costs far more), and the
    pipeline gets a view of it, finished with before the next rows arrive.
    """

    def __init__(self, pipeline: Pipeline, batch_size: int):
        self.pipeline = pipeline
        self.batch_size = batch_size
        self.buffer = np.zeros(batch_size, dtype=FLOW_DTYPE)
        self.octets = self.buffer.view(np.uint8).reshape(batch_size, FLOW_DTYPE.itemsize)
        self.rows = 0

    def add(self, flows: np.ndarray) -> None:
        """Queue flows; process a batch each time ``batch_size`` rows are waiting."""
        while len(flows):
            take = min(len(flows), self.batch_size - self.rows)
            part = flows[:take]
            if part.dtype == FLOW_DTYPE and part.flags.c_contiguous:
                octets = part.view(np.uint8).reshape(take, FLOW_DTYPE.itemsize)
                self.octets[self.rows : self.rows + take] = octets
            else:
                self.buffer[self.rows : self.rows + take] = part
            self.rows += take
            flows = flows[take:]
            if self.rows == self.batch_size:
                self.flush()

    def flush(self) -> None:
        """Process whatever is waiting (also a partial batch)."""
        if not self.rows:
            return
        rows, self.rows = self.rows, 0
        self.pipeline.process(self.buffer[:rows])
