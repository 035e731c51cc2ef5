"""The file partition on real files: chunks, half lines, rotation, truncation, resumption."""

from __future__ import annotations

import os

import pytest

from logpipe.process.counters import Counters
from logpipe.process.parse import MAX_LINE_BYTES, parse_chunk
from logpipe.process.source import FileState, _FilePartition

LINE = b"2026-10-06 09:42:36 cust_1 /x 200 0.1\n"


@pytest.fixture
def partitions():
    """Build partitions with `partitions(path, state, once=...)`; all closed afterwards."""
    built = []

    def build(path, state=None, *, once=False, counters=None):
        built.append(_FilePartition(path, state, once=once, counters=counters or Counters()))
        return built[-1]

    yield build
    for partition in built:
        partition.close()


def _lines(partition) -> list[bytes]:
    """Everything the partition hands out until it has nothing more right now."""
    out = []
    while True:
        try:
            batch = partition.next_batch()
        except StopIteration:
            return out
        if not batch:
            return out
        for chunk in batch:
            out += [line for line in chunk.data.split(b"\n") if line]


def test_a_line_written_in_two_halves_is_handed_out_once_whole(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE + LINE[:10])
    partition = partitions(path)
    assert _lines(partition) == [LINE.strip()]
    assert partition.snapshot().offset == len(LINE)  # the half line is not covered
    with path.open("ab") as f:
        f.write(LINE[10:])
    assert _lines(partition) == [LINE.strip()]
    assert partition.snapshot().offset == 2 * len(LINE)


def test_resumes_from_the_snapshot_offset(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE * 3)
    first = partitions(path)
    _lines(first)
    state = first.snapshot()
    with path.open("ab") as f:
        f.write(LINE.replace(b"cust_1", b"cust_2"))
    assert _lines(partitions(path, state)) == [LINE.strip().replace(b"cust_1", b"cust_2")]


def test_once_hands_out_a_last_line_without_newline_then_stops(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE + LINE.strip())
    partition = partitions(path, once=True)
    assert _lines(partition) == [LINE.strip(), LINE.strip()]
    with pytest.raises(StopIteration):
        partition.next_batch()


def test_rename_rotation_finishes_the_old_file_then_reads_the_new(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE * 2)
    partition = partitions(path)
    assert len(_lines(partition)) == 2
    with path.open("ab") as f:
        f.write(LINE)  # written just before the rotation
    path.rename(tmp_path / "a.log.1")
    path.write_bytes(LINE.replace(b"cust_1", b"cust_9"))
    assert len(_lines(partition)) == 1  # the old file's last line; at its end, the switch
    assert _lines(partition) == [LINE.strip().replace(b"cust_1", b"cust_9")]
    assert partition.snapshot().identity == f"{os.stat(path).st_dev}:{os.stat(path).st_ino}"


def test_rotation_while_stopped_finishes_the_old_file_first(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE)
    first = partitions(path)
    _lines(first)
    state = first.snapshot()
    with path.open("ab") as f:
        f.write(LINE.replace(b"cust_1", b"cust_2"))
    path.rename(tmp_path / "a.log.1")
    path.write_bytes(LINE.replace(b"cust_1", b"cust_3"))
    partition = partitions(path, state)
    assert _lines(partition) == [LINE.strip().replace(b"cust_1", b"cust_2")]
    assert _lines(partition) == [LINE.strip().replace(b"cust_1", b"cust_3")]


def test_copytruncate_starts_again_at_zero_with_new_timestamps(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE * 2)
    partition = partitions(path)
    before = partition.next_batch()
    with path.open("r+b") as f:
        f.truncate(0)
    assert _lines(partition) == []  # notices the truncation
    path.write_bytes(LINE)
    after = partition.next_batch()
    assert after[0].offset == 0
    assert partition.snapshot().generation == 1
    # the same bytes at the same offset, before and after: still two different points
    assert parse_chunk(before[0]).points[0] != parse_chunk(after[0]).points[0]


def test_truncated_while_stopped_starts_at_zero(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE * 3)
    state = FileState(f"{os.stat(path).st_dev}:{os.stat(path).st_ino}", 3 * len(LINE))
    path.write_bytes(LINE)  # same inode, now shorter
    partition = partitions(path, state)
    assert _lines(partition) == [LINE.strip()]
    assert partition.snapshot().generation == 1


def test_an_endless_line_is_rejected_without_being_kept_in_memory(tmp_path, partitions):
    path = tmp_path / "a.log"
    with path.open("wb") as f:
        f.write(LINE)
        f.write(b"x" * (3 * 1024 * 1024) + b"\n")
        f.write(LINE)
    partition = partitions(path)
    chunks = []
    for _ in range(8):  # skipping the long line hands out nothing for a while
        chunks += partition.next_batch()
    parsed = [parse_chunk(chunk) for chunk in chunks]
    assert sum(len(p.points) for p in parsed) == 2
    (reject,) = [r for p in parsed for r in p.rejects]
    assert reject.reason == "line longer than 64 KiB" and reject.offset == len(LINE)
    assert all(len(chunk.data) <= (1 << 20) + MAX_LINE_BYTES for chunk in chunks)
    assert partition.snapshot().offset == path.stat().st_size


def test_lag_is_the_bytes_not_yet_read(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE * 2 + LINE[:5])
    counters = Counters()
    partition = partitions(path, counters=counters)
    partition.next_batch()
    assert counters.lag_bytes == 5
