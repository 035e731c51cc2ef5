"""The file source on real files, without a server: identities, rotation, truncation, half
lines, over-long lines, restarts, discovery. The clock is injected; nothing sleeps."""

from __future__ import annotations

import gzip
import os
import shutil

import pytest

from logpipe.process.counters import Counters
from logpipe.process.files import Scanner, fingerprint, is_rotated
from logpipe.process.parse import MAX_LINE_BYTES, cut_line, parse_chunk
from logpipe.process.source import CHUNK_BYTES, FileState, _FilesPartition, _StdinPartition

LINE = b"2026-10-06 09:42:36 cust_1 /x 200 0.1\n"


def line(n: int, latency: str = "0.1") -> bytes:
    return f"2026-10-06 09:42:36 cust_{n} /x 200 {latency}\n".encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def partitions(clock):
    """`partitions(path_or_glob, state=None, once=False, ...)`: a partition owning every file
    (the only one of one), closed afterwards."""
    built = []

    def build(pattern, state=None, *, once=False, excludes=(), **options):
        scanner = Scanner([str(pattern)], list(excludes), clock=clock)
        options.setdefault("rotate_wait", 5.0)
        options.setdefault("read_from_end", False)
        options.setdefault("counters", Counters())
        partition = _FilesPartition(
            0, scanner, state, once=once, partitions=1, clock=clock, **options
        )
        built.append(partition)
        return partition

    yield build
    for partition in built:
        partition.close()


def drain(partition, clock: Clock | None = None) -> list[bytes]:
    """Every complete line the partition hands out until it has nothing more right now."""
    out = []
    while True:
        try:
            batch = partition.next_batch()
        except StopIteration:
            return out
        if not batch:
            return out
        for chunk in batch:
            assert not chunk.cut, chunk
            out += [raw for raw in chunk.data.split(b"\n") if raw]


def rescan(partition, clock: Clock, seconds: float = 1.0) -> list:
    """Let `seconds` pass and take the next batch (the partition lists files again)."""
    clock.now += seconds
    return partition.next_batch()


# -- identity --------------------------------------------------------------------------------


def test_an_identity_is_the_first_line_and_waits_for_it():
    assert fingerprint(b"") is None
    assert fingerprint(b"2026-10-06 09:42") is None  # first line not complete yet
    assert fingerprint(LINE) == fingerprint(LINE + b"more")
    assert fingerprint(LINE) != fingerprint(line(2))
    assert fingerprint(b"x" * 5000) == fingerprint(b"x" * 1024)  # a long first line: 1 KiB


def test_rotated_names_are_told_from_live_ones():
    for name in ("api.log.1", "api.log.12.gz", "api.log-20261201", "api.log.gz"):
        assert is_rotated(name)
    assert not is_rotated("api.log")
    assert not is_rotated("api-2026-12-01.log")  # a dated name is not a rotation


# -- lines -----------------------------------------------------------------------------------


def test_a_line_written_in_two_halves_is_handed_out_once_whole(tmp_path, partitions, clock):
    path = tmp_path / "a.log"
    path.write_bytes(LINE + LINE[:10])
    partition = partitions(path)
    assert drain(partition) == [LINE.strip()]
    (state,) = partition.snapshot().values()
    assert state.offset == len(LINE)  # the half line is not covered
    with path.open("ab") as f:
        f.write(LINE[10:])
    assert drain(partition) == [LINE.strip()]
    assert next(iter(partition.snapshot().values())).offset == 2 * len(LINE)


def test_resumes_from_the_snapshot_offset(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE * 3)
    first = partitions(path)
    drain(first)
    state = first.snapshot()
    with path.open("ab") as f:
        f.write(line(2))
    assert drain(partitions(path, state)) == [line(2).strip()]


def test_once_stops_before_an_unterminated_last_line_and_leaves_it(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE + b"2026-10-06 09:42:36 cust_1 /x 200 15.")
    partition = partitions(path, once=True)
    assert drain(partition) == [LINE.strip()]
    with pytest.raises(StopIteration):
        partition.next_batch()
    state = partition.snapshot()
    assert next(iter(state.values())).offset == len(LINE)  # the next run reads it whole
    with path.open("ab") as f:
        f.write(b"25\n")
    assert drain(partitions(path, state, once=True)) == [
        b"2026-10-06 09:42:36 cust_1 /x 200 15.25"
    ]


def test_an_endless_line_is_rejected_without_being_kept_in_memory(tmp_path, partitions):
    path = tmp_path / "a.log"
    with path.open("wb") as f:
        f.write(LINE)
        f.write(b"x" * (3 * 1024 * 1024) + b"\n")
        f.write(LINE)
    partition = partitions(path)
    chunks = []
    for _ in range(32):  # skipping the long line hands out nothing for a while (12 reads)
        chunks += partition.next_batch()
    parsed = [parse_chunk(chunk) for chunk in chunks]
    assert sum(len(p.points) for p in parsed) == 2
    (reject,) = [r for p in parsed for r in p.rejects]
    assert reject.reason == "line longer than 64 KiB" and reject.offset == len(LINE)
    assert all(len(chunk.data) <= CHUNK_BYTES + MAX_LINE_BYTES for chunk in chunks)
    assert next(iter(partition.snapshot().values())).offset == path.stat().st_size


def test_a_snapshot_inside_an_over_long_line_resumes_skipping_it(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE + b"y" * (200 * 1024))  # over-long, no newline yet
    first = partitions(path)
    chunks = first.next_batch()
    assert [parse_chunk(c).rejects[0].reason for c in chunks if parse_chunk(c).rejects] == [
        "line longer than 64 KiB"
    ]
    state = first.snapshot()
    assert next(iter(state.values())).skipping
    with path.open("ab") as f:  # the tail of the long line looks like a request
        f.write(b" 2026-10-06 09:42:36 cust_evil /x 500 9.9\n" + line(3))
    assert drain(partitions(path, state)) == [line(3).strip()]


def test_lag_is_the_bytes_not_yet_read(tmp_path, partitions):
    path = tmp_path / "a.log"
    path.write_bytes(LINE * 2 + LINE[:5])
    counters = Counters()
    partition = partitions(path, counters=counters)
    partition.next_batch()
    assert counters.lag_bytes == 5


# -- rotation --------------------------------------------------------------------------------


def test_a_renamed_file_is_read_on_while_the_application_still_writes_to_it(
    tmp_path, partitions, clock
):
    path = tmp_path / "api.log"
    app = path.open("ab", buffering=0)  # the application's descriptor
    app.write(line(1) + b"2026-10-06 09:42:36 cust_2 /x 200 15.")
    partition = partitions(path)
    assert drain(partition) == [line(1).strip()]
    path.rename(tmp_path / "api.log.1")  # logrotate `create`
    path.touch()
    assert rescan(partition, clock) == []  # the new file has no first line yet
    app.write(b"25\n" + line(3))  # still to the old descriptor
    assert drain(partition) == [b"2026-10-06 09:42:36 cust_2 /x 200 15.25", line(3).strip()]
    app.close()
    with path.open("ab") as app:  # the application reopens its log
        app.write(line(4))
    # the new file was listed without a first line: it is looked at again every 50 ms,
    # not at the next listing a second later
    assert drain(partition) == []
    assert [raw for c in rescan(partition, clock, 0.06) for raw in c.data.split(b"\n") if raw] == [
        line(4).strip()
    ]


def test_a_rotated_file_quiet_for_the_rotate_wait_gives_up_its_half_line(
    tmp_path, partitions, clock
):
    path = tmp_path / "api.log"
    path.write_bytes(line(1) + b"2026-10-06 09:42:36 cust_2 /x 200 15.")
    partition = partitions(path, rotate_wait=5.0)
    drain(partition)
    path.rename(tmp_path / "api.log.1")
    assert rescan(partition, clock, 4.0) == []  # quiet for 4 s: still waiting
    (cut,) = rescan(partition, clock, 1.5)
    assert cut.cut and cut.data == b"2026-10-06 09:42:36 cust_2 /x 200 15."
    (reject,) = cut_line(cut).rejects
    assert reject.reason.startswith("unterminated line")
    assert not partition._readers  # closed; its state stays
    (state,) = partition.snapshot().values()
    assert state.offset == (tmp_path / "api.log.1").stat().st_size


def test_a_file_renamed_out_of_sight_is_closed_after_the_rotate_wait(tmp_path, partitions, clock):
    path = tmp_path / "api.log"
    path.write_bytes(line(1) + b"2026-10-06 09:42:36 cust_2 /x 200 15.")
    partition = partitions(path, rotate_wait=5.0)
    drain(partition)
    path.rename(tmp_path / "archived.txt")  # no longer listed under any name
    with (tmp_path / "archived.txt").open("ab") as f:
        f.write(b"25\n")
    assert drain(partition) == [b"2026-10-06 09:42:36 cust_2 /x 200 15.25"]
    assert rescan(partition, clock, 6.0) == []
    assert not partition._readers


def stopped_behind(path, partitions) -> dict:
    """The state of a run that read line 1 of `path` and stopped; line 2 is written after."""
    path.write_bytes(line(1))
    first = partitions(path)
    drain(first)
    with path.open("ab") as f:
        f.write(line(2))
    return first.snapshot()


def test_a_rotated_file_not_read_to_its_end_is_not_quiet(tmp_path, partitions, clock):
    """Quiet is judged by the file, not by when the reader last read: a reader behind its
    file must not give up a half line whose end is already written."""
    path = tmp_path / "api.log"
    path.write_bytes(line(1) + b"2026-10-06 09:42:36 cust_2 /x 200 15.")
    partition = partitions(path, rotate_wait=5.0)
    drain(partition)
    with path.open("ab") as f:
        f.write(b"25\n")  # written, not read yet
    path.rename(tmp_path / "api.log.1")
    clock.now += 6.0  # long past the rotate wait, without a read
    read = drain(partition) + drain(partition)
    assert read == [b"2026-10-06 09:42:36 cust_2 /x 200 15.25"]


def test_a_copytruncated_file_is_not_quiet_but_read_on_in_its_copy(tmp_path, partitions, clock):
    path = tmp_path / "api.log"
    path.write_bytes(line(1) + b"2026-10-06 09:42:36 cust_2 /x 200 15.")
    partition = partitions(path, rotate_wait=5.0)
    drain(partition)
    with path.open("ab") as f:
        f.write(b"25\n")
    shutil.copy(path, tmp_path / "api.log.1")
    os.truncate(path, 0)
    clock.now += 6.0
    read = drain(partition) + drain(partition) + drain(partition)
    assert read == [b"2026-10-06 09:42:36 cust_2 /x 200 15.25"]


def test_two_rotations_while_stopped_read_every_file_oldest_first(tmp_path, partitions):
    path = tmp_path / "api.log"
    state = stopped_behind(path, partitions)
    path.rename(tmp_path / "api.log.1")
    path.write_bytes(line(3) + line(4))
    os.utime(tmp_path / "api.log.1", (1, 1))
    (tmp_path / "api.log.1").rename(tmp_path / "api.log.2")
    path.rename(tmp_path / "api.log.1")
    os.utime(tmp_path / "api.log.1", (2, 2))
    path.write_bytes(line(5))
    assert drain(partitions(path, state)) == [line(n).strip() for n in (2, 3, 4, 5)]


def test_a_compressed_rotation_is_read_from_where_it_stopped(tmp_path, partitions):
    path = tmp_path / "api.log"
    state = stopped_behind(path, partitions)
    with gzip.open(tmp_path / "api.log.1.gz", "wb") as packed:  # compress, no delay
        packed.write(path.read_bytes())
    path.unlink()
    (tmp_path / "api.log").write_bytes(line(3))
    assert drain(partitions(path, state)) == [line(2).strip(), line(3).strip()]


# -- truncation ------------------------------------------------------------------------------


def test_copytruncate_behind_the_reader_reads_the_rest_from_the_copy(tmp_path, partitions, clock):
    path = tmp_path / "api.log"
    path.write_bytes(line(1))
    partition = partitions(path)
    assert drain(partition) == [line(1).strip()]
    with path.open("ab") as f:  # written, not read yet
        f.write(line(2) + line(3))
    shutil.copy(path, tmp_path / "api.log.1")
    with path.open("r+b") as f:
        f.truncate(0)
    path.write_bytes(line(4))
    read = drain(partition)  # notices the change and keeps nothing read from the wrong place
    read += [raw for c in rescan(partition, clock) for raw in c.data.split(b"\n") if raw]
    read += drain(partition)
    assert sorted(read) == sorted(line(n).strip() for n in (2, 3, 4))


def test_a_change_is_followed_by_a_fresh_listing_at_once(tmp_path, partitions):
    """logrotate may move the copy on (or delete it, `rotate N`) before a listing a second
    later: the copy is looked for as soon as the change is seen, the clock standing still."""
    path = tmp_path / "api.log"
    path.write_bytes(line(1))
    partition = partitions(path)
    assert drain(partition) == [line(1).strip()]
    with path.open("ab") as f:
        f.write(line(2))
    shutil.copy(path, tmp_path / "api.log.1")
    os.truncate(path, 0)
    path.write_bytes(line(3))
    read = drain(partition) + drain(partition) + drain(partition)
    assert sorted(read) == sorted(line(n).strip() for n in (2, 3))


def test_a_name_that_holds_another_file_than_listed_is_not_read_as_the_listed_one(
    tmp_path, partitions
):
    """A listing is up to a second old; by then `api.log.2.gz` may be `api.log.3.gz` and a
    new `api.log.2.gz` another file: its bytes must not be read at the first one's offset."""
    old = tmp_path / "api.log.2.gz"
    with gzip.open(old, "wb") as packed:
        packed.write(line(1) + line(2))
    state = {fingerprint(line(1)): FileState(len(line(1)))}
    partition = partitions(tmp_path / "api.log", state)
    partition._scanner.scan()  # the listing the partition will use, taken now
    old.rename(tmp_path / "api.log.3.gz")
    with gzip.open(old, "wb") as packed:  # the next rotation's file under the old name
        packed.write(line(5) + line(6))
    read = drain(partition) + drain(partition) + drain(partition)
    assert sorted(read) == sorted(line(n).strip() for n in (2, 5, 6))


def test_a_file_truncated_and_regrown_past_the_offset_is_read_whole_from_zero(
    tmp_path, partitions
):
    path = tmp_path / "api.log"
    path.write_bytes(line(1))
    first = partitions(path)
    drain(first)
    state = first.snapshot()
    path.write_bytes(line(7) * 3)  # same inode, new content, longer than the offset
    assert drain(partitions(path, state)) == [line(7).strip()] * 3


def test_one_identity_one_read_through_links_and_a_new_device(tmp_path, partitions):
    real = tmp_path / "real.log"
    real.write_bytes(line(1) + line(2))
    (tmp_path / "link.log").symlink_to(real)
    partition = partitions(tmp_path / "*.log")
    assert drain(partition) == [line(1).strip(), line(2).strip()]
    state = partition.snapshot()
    # moved to a remounted volume: new inode (and device), same content
    content = real.read_bytes()
    real.unlink()
    real.write_bytes(content + line(3))
    assert drain(partitions(real, state)) == [line(3).strip()]


def test_a_state_names_files_by_identity_not_path(tmp_path, partitions):
    path = tmp_path / "api.log"
    path.write_bytes(line(1))
    partition = partitions(path)
    drain(partition)
    (identity,) = partition.snapshot()
    assert identity == fingerprint(line(1))
    assert partition.snapshot()[identity] == FileState(len(line(1)), False, path.stat().st_ino)


# -- discovery -------------------------------------------------------------------------------


def test_a_glob_is_listed_again_and_excludes_are_left(tmp_path, partitions, clock):
    pattern = tmp_path / "*.log"
    (tmp_path / "a.log").write_bytes(line(1))
    partition = partitions(pattern, excludes=[str(tmp_path / "skip*")])
    assert drain(partition) == [line(1).strip()]
    (tmp_path / "b.log").write_bytes(line(2))
    (tmp_path / "skip.log").write_bytes(line(3))
    clock.now += 1
    assert drain(partition) == [line(2).strip()]


def test_read_from_end_skips_what_is_there_at_the_first_run(tmp_path, partitions, clock):
    path = tmp_path / "api.log"
    path.write_bytes(line(1))
    partition = partitions(path, read_from_end=True)
    assert drain(partition) == []
    with path.open("ab") as f:
        f.write(line(2))
    assert drain(partition) == [line(2).strip()]


def test_standard_input_is_cut_into_lines_like_a_file_and_bounds_a_long_one():
    read_end, write_end = os.pipe()
    partition = _StdinPartition(read_end)
    try:
        os.write(write_end, line(1) + b"z" * 40_000)  # a pipe holds 64 KiB: in two writes
        chunks = partition.next_batch()
        os.write(write_end, b"z" * (MAX_LINE_BYTES - 30_000))
        chunks += partition.next_batch()
        assert [parse_chunk(c).rejects[0].reason for c in chunks[1:]] == [
            "line longer than 64 KiB"
        ]
        assert partition._lines.partial == b""  # the rest of the long line is not kept
        os.write(write_end, b"zz\n" + line(2) + b"2026-10-06 09:42")
        assert [raw for c in partition.next_batch() for raw in c.data.split(b"\n") if raw] == [
            line(2).strip()
        ]
        os.close(write_end)
        (cut,) = partition.next_batch()
        assert cut.cut and cut.data == b"2026-10-06 09:42"
        with pytest.raises(StopIteration):
            partition.next_batch()
    finally:
        os.close(read_end)
