"""no_error_logs: error lines in the peers' logs, warnings counted, narrow allowances."""

from __future__ import annotations

import json

from peers.soak import Allowance, check_no_error_logs, log_offsets, parse_log_line, read_logs


def line(level: str, event: str, **fields) -> str:
    return json.dumps(
        {"event": event, "level": level, "timestamp": "2026-01-05T10:00:00.000000Z", **fields}
    )


def test_info_lines_and_warnings_are_no_violation_and_warnings_are_counted():
    records = [
        parse_log_line("bank", line("info", "payment_executed")),
        parse_log_line("bank", line("warning", "payment_failed")),
        parse_log_line("oracle", line("warning", "payment_failed")),
    ]
    found, warnings, _ = check_no_error_logs([r for r in records if r])
    assert found == [] and warnings == {"payment_failed": 2}


def test_an_error_line_is_named_by_service_and_event_with_its_count_and_height():
    records = [
        parse_log_line("bank", line("error", "instruction_unexecutable", height=7)),
        parse_log_line("bank", line("error", "instruction_unexecutable", height=9)),
    ]
    [v] = check_no_error_logs([r for r in records if r])[0]
    assert (v.invariant, v.height, v.ids) == (
        "no_error_logs",
        7,
        ("bank", "instruction_unexecutable"),
    )
    assert v.detail.startswith("2 error line(s)")


def test_a_traceback_or_a_plain_error_line_counts_as_an_error():
    traceback = parse_log_line("dealer-D1", "Traceback (most recent call last):")
    plain = parse_log_line("authority-D1", "2026-01-05 10:00:00 ERROR nats.aio.client boom")
    assert traceback is not None and traceback.level == "error"
    assert plain is not None and plain.level == "error"
    found, _, _ = check_no_error_logs([traceback, plain])
    assert len(found) == 2


def test_an_allowance_covers_only_its_service_event_and_window():
    at_kill = parse_log_line("authority-D2", line("error", "snapshot_rejected"))
    elsewhere = parse_log_line("authority-D1", line("error", "snapshot_rejected"))
    assert at_kill is not None and elsewhere is not None and at_kill.at_ms is not None
    allow = Allowance("authority-D2", "snapshot_rejected", at_kill.at_ms - 1, at_kill.at_ms + 1)
    found, _, allowed = check_no_error_logs([at_kill, elsewhere], allowances=[allow])
    assert [v.ids for v in found] == [("authority-D1", "snapshot_rejected")]
    assert allowed == {"authority-D2: snapshot_rejected": 1}


def test_only_lines_written_after_the_start_are_read(tmp_path):
    log = tmp_path / "bank.log"
    log.write_text(line("error", "old") + "\n")
    offsets = log_offsets(tmp_path)
    with log.open("a") as f:
        f.write(line("error", "new") + "\n")
    (tmp_path / "soak.log").write_text(line("error", "the soak's own") + "\n")
    assert [r.event for r in read_logs(tmp_path, offsets)] == ["new"]
