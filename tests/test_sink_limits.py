"""The sink's limits: bodies InfluxDB accepts whatever the lines' size, and a dead-letter file
that holds each rejected line once, one entry a line for every reader."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from logpipe.cli import app
from logpipe.process import sink
from logpipe.process.parse import Reject
from logpipe.process.sink import DeadLetters
from tests.conftest import count_points

runner = CliRunner()


def _entries(dead: DeadLetters) -> list[dict]:
    return [json.loads(line) for line in dead.path.read_text(encoding="utf-8").splitlines()]


def _add_and_close(dead: DeadLetters, rejects: list[Reject]) -> None:
    dead.add(rejects)
    dead.close()


def test_rejects_replayed_after_a_crash_are_written_once(tmp_path):
    path = tmp_path / "state" / "dead.jsonl"
    before = [
        Reject("api.log", 0, "too few fields", "a", "f1"),
        Reject("api.log", 9, "r", "b", "f1"),
    ]
    _add_and_close(DeadLetters(path), before)
    again = [
        *before,  # replayed: the snapshot was taken before them
        Reject("api.log", 18, "r", "c", "f1"),
        Reject("api.log.1", 0, "r", "d", "f2"),  # another file, the same offset
    ]
    _add_and_close(DeadLetters(path), again)
    assert [(e["file"], e["offset"], e["raw"]) for e in _entries(DeadLetters(path))] == [
        ("f1", 0, "a"),
        ("f1", 9, "b"),
        ("f1", 18, "c"),
        ("f2", 0, "d"),
    ]


def test_points_refused_by_influxdb_are_never_taken_for_a_replay(tmp_path):
    refused = Reject("", -1, "refused by InfluxDB: field type conflict", "requests x=1 1")
    for _ in range(2):
        _add_and_close(DeadLetters(tmp_path / "dead.jsonl"), [refused, refused])
    assert [e["raw"] for e in _entries(DeadLetters(tmp_path / "dead.jsonl"))] == [refused.raw] * 4


def test_only_the_end_of_the_file_is_read_for_a_replay(tmp_path, monkeypatch):
    monkeypatch.setattr(sink, "RECENT_BYTES", 500)
    path = tmp_path / "dead.jsonl"
    rejects = [Reject("api.log", i, "r", "x", "f1") for i in range(20)]  # ~70 bytes each
    _add_and_close(DeadLetters(path), rejects)
    _add_and_close(DeadLetters(path), [rejects[0], rejects[-1]])
    offsets = [e["offset"] for e in _entries(DeadLetters(path))]
    assert offsets == [*range(20), 0]  # the first is beyond the last 500 bytes: written again


def test_an_entry_cut_by_a_crash_leaves_the_next_on_its_own_line(tmp_path):
    path = tmp_path / "dead.jsonl"
    path.write_text('{"source": "api.log", "offset": 0, "reason": "r", "raw": "a", "fi')
    _add_and_close(DeadLetters(path), [Reject("api.log", 5, "r", "b", "f1")])
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["raw"] == "b"


def test_unicode_line_breaks_are_escaped_and_other_text_kept(tmp_path):
    raws = ["a\u2028b", "c\u2029d", "e\u0085f", "caf\u00e9 \u65e5\u672c \x1f\r"]
    dead = DeadLetters(tmp_path / "dead.jsonl")
    _add_and_close(dead, [Reject("api.log", i, "r", raw, "f1") for i, raw in enumerate(raws)])
    text = dead.path.read_text(encoding="utf-8")
    assert not {"\u2028", "\u2029", "\u0085", "\x1f", "\r"} & set(text)
    assert "\\u2028" in text and "\\u2029" in text and "\\u0085" in text
    assert "caf\u00e9 \u65e5\u672c" in text  # readable, not \u-escaped
    lines = text.splitlines()
    assert len(lines) == len(raws)
    assert [json.loads(line)["raw"] for line in lines] == raws


def test_a_file_of_huge_lines_is_stored_in_bodies_influxdb_accepts(
    settings_env, tmp_path, monkeypatch
):
    """5,000 lines of 6 KB: one batch of 5,000 points would be 30 MB, over InfluxDB's
    max-body-size of 25 MB. No snapshot or timeout cuts the batch short here."""
    monkeypatch.setenv("LOGPIPE_SNAPSHOT_INTERVAL", "60")
    monkeypatch.setenv("LOGPIPE_FLUSH_INTERVAL", "60")
    query = "q=" + "a" * 6000
    log = tmp_path / "huge.log"
    log.write_text(
        "".join(
            f"2026-10-06 09:{i // 60 % 60:02d}:{i % 60:02d} cust_{i % 5} /api/v1/x?{query}{i}"
            " 200 0.524\n"
            for i in range(5000)
        )
    )
    assert log.stat().st_size > 30_000_000
    result = runner.invoke(app, ["process", "--input", str(log), "--once"])
    assert result.exit_code == 0, result.output
    assert "read 5000 lines: stored 5000, rejected 0" in result.output
    assert count_points(settings_env) == 5000
    assert not settings_env.dead_letter_path.exists()
