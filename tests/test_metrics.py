"""Tests of the agent's counters, their Prometheus text, and rate-limited logging."""

import asyncio
import logging
import urllib.request

from agent.metrics import Metrics, RateLimitedLog, serve_metrics


def test_snapshot_merges_counters_gauges_and_sources():
    """A snapshot holds counters, gauges read now, and prefixed outside counter dicts."""
    metrics = Metrics()
    metrics.inc("scored", 3)
    metrics.inc("scored")
    depth = {"n": 7}
    metrics.gauge("spool_depth", lambda: depth["n"])
    metrics.include("decode_", lambda: {"missing_template": 2})
    depth["n"] = 9
    assert metrics.snapshot() == {"decode_missing_template": 2, "scored": 4, "spool_depth": 9}


def test_prometheus_text_format():
    """Counters end in _total with TYPE counter; gauges keep their name with TYPE gauge."""
    metrics = Metrics()
    metrics.inc("accepted", 5)
    metrics.gauge("spool_depth", lambda: 2)
    text = metrics.prometheus()
    lines = text.splitlines()
    assert "# TYPE iotwatch_agent_accepted_total counter" in lines
    assert "iotwatch_agent_accepted_total 5" in lines
    assert "# TYPE iotwatch_agent_spool_depth gauge" in lines
    assert "iotwatch_agent_spool_depth 2" in lines
    assert any(line.startswith("# HELP iotwatch_agent_accepted_total ") for line in lines)
    assert text.endswith("\n")


def test_metrics_port_serves_the_text():
    """An HTTP GET on the metrics port answers 200 with the Prometheus text."""
    metrics = Metrics()
    metrics.inc("records_in", 42)

    async def scenario():
        server = await serve_metrics(metrics, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        url = f"http://127.0.0.1:{port}/metrics"
        body = await loop.run_in_executor(None, lambda: urllib.request.urlopen(url).read())
        server.close()
        await server.wait_closed()
        return body.decode()

    assert "iotwatch_agent_records_in_total 42" in asyncio.run(scenario())


def test_repeated_errors_are_muted_per_key_then_summarised(caplog):
    """Equal errors from one exporter log once per interval, then report how many were muted."""
    logger = logging.getLogger("test.ratelimit")
    limited = RateLimitedLog(logger, interval=0.0)
    limited.interval = 3600.0
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        assert limited.warning(("192.0.2.1", "TemplateError"), "bad %s", "x")
        for _ in range(5):
            assert not limited.warning(("192.0.2.1", "TemplateError"), "bad %s", "x")
        assert limited.warning(("192.0.2.2", "TemplateError"), "bad %s", "y")
        limited.interval = 0.0
        assert limited.warning(("192.0.2.1", "TemplateError"), "bad %s", "x")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["bad x", "bad y", "bad x (5 more like it muted)"]
