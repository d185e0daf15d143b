"""``python -m agent dump``: JSON lines from IPFIX files, stdin and Super Mediator JSON."""

import json
import subprocess
import sys

from conftest import ROOT
from test_ipfix_decode import FLOW_TID, data_set, message, yaf_record, yaf_templates


def run_dump(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run the command in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "agent", "dump", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_dump_prints_one_json_object_per_flow(tmp_path):
    """Each flow record is one JSON line with names, numbers, address strings and ISO times."""
    path = tmp_path / "x.ipfix"
    path.write_bytes(
        message(yaf_templates()) + message(data_set(FLOW_TID, yaf_record(1) + yaf_record(2)))
    )
    done = run_dump(str(path))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["sourceIPv4Address"] == "10.0.0.2"
    assert first["reversePacketTotalCount"] == 21
    assert first["dataByteCount"] == 501
    assert first["flowStartMilliseconds"] == "2023-11-14T22:13:20.001Z"


def test_dump_reads_stdin_and_reports_a_truncated_tail():
    """From stdin, a cut-short message is named by offset; earlier records still print."""
    good = message(yaf_templates()) + message(data_set(FLOW_TID, yaf_record(1)))
    bad = message(data_set(FLOW_TID, yaf_record(2)))[:-5]
    done = run_dump("-", stdin=good + bad)
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 1
    assert f"offset {len(good)}" in done.stderr.decode() and "truncated" in done.stderr.decode()


def test_dump_names_the_bad_message_and_reason(tmp_path):
    """A data set without its template is reported with the message offset and exits 1."""
    path = tmp_path / "x.ipfix"
    first = message(data_set(FLOW_TID, yaf_record(1)))
    path.write_bytes(first + message(yaf_templates()) + message(data_set(FLOW_TID, yaf_record(3))))
    done = run_dump(str(path))
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 1
    assert b"message at offset 0" in done.stderr and b"no template" in done.stderr


def test_dump_options_records(samples):
    """--options adds YAF's statistics options records, kept apart from flows."""
    path = samples / "yaf-2.16.4-local/yaf_flowstats_biflow.yaf"
    plain = run_dump(str(path))
    with_options = run_dump(str(path), "--options")
    assert plain.returncode == 0 and with_options.returncode == 0
    extra = with_options.stdout.splitlines()[len(plain.stdout.splitlines()) :]
    assert len(plain.stdout.splitlines()) == 7
    assert any(b"exportedFlowRecordTotalCount" in x for x in extra)


def test_dump_super_mediator_json(tmp_path):
    """A Super Mediator JSON file is recognised by content and printed the same way."""
    path = tmp_path / "sm.json"
    path.write_text(
        '{"flows": {"flowStartMilliseconds": "2019-06-25 08:36:47.096", '
        '"sourceIPv4Address": "10.0.0.1", "sourceMacAddress": "20:f8:5e:ca:91:52:"}}\n'
        '{"stats": {"x": 1}}\n'
    )
    done = run_dump(str(path))
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["flowStartMilliseconds"] == "2019-06-25T08:36:47.096Z"
    assert record["sourceMacAddress"] == "20:f8:5e:ca:91:52"
