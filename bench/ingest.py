"""Ingest benchmark: `logpipe process --once` against the raw InfluxDB ceiling, same run.

    python bench/ingest.py [--lines 1000000] [--rounds 2] [--rss-sizes 200000,1000000,3000000]

Ceiling and pipeline are measured `--rounds` times, alternately, each round on a fresh
server (the pipeline once InfluxDB is idle after the ceiling); the ratio is of their medians,
so one noisy moment of a shared machine does not decide it.

Ceiling: the same points, serialized as line protocol before the clock starts, POSTed to the
same InfluxDB in batches of 5,000, one after another. Pipeline: `logpipe process --once` on
the file, from process start to exit (parsing, batching, writing, recovery snapshots).
Freshness: a followed file fed by `logpipe generate --rate 10000`; a second followed file
gets a probe line every 50 ms, and the time until each probe is queryable is measured.
Startup: from starting `logpipe process` on a one-line log to that line being queryable.
Memory: the processor's peak RSS over `process --once` of 200,000, 1,000,000 and 3,000,000
lines (`--rss-sizes`), each into a fresh server.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from common import logpipe_env, run_logpipe, seed_log, settings_for, settle

from logpipe.errors import InfluxRejected
from logpipe.influx import InfluxClient
from logpipe.influxd import LocalInfluxd
from logpipe.process.parse import Chunk, parse_chunk
from logpipe.schema import source_salt

BATCH = 5000


def _count(client: InfluxClient, where: str = "") -> int:
    (series,) = client.query(f"SELECT count(latency) FROM requests {where}")
    return int(series[0]["values"][0][1]) if series else 0


def ceiling(url: str, log: Path, database: str) -> float:
    """Seconds to POST the file's points, pre-serialized, in batches of 5,000."""
    points = parse_chunk(Chunk(str(log), 0, log.read_bytes(), source_salt("ceiling"))).points
    bodies = ["\n".join(points[i : i + BATCH]).encode() for i in range(0, len(points), BATCH)]
    del points
    with httpx.Client(base_url=url, timeout=60) as http:
        http.post("/query", data={"q": f"CREATE DATABASE {database}"}).raise_for_status()
        started = time.perf_counter()
        for body in bodies:
            http.post("/write", params={"db": database, "precision": "ns"}, content=body)
        return time.perf_counter() - started


def freshness(url: str, work: Path, seconds: float = 10.0) -> list[float]:
    """Delays (s) from appending a probe line to its point being queryable, under load."""
    settings = settings_for(url, "fresh", work / "fresh-state")
    load, probes = work / "load.log", work / "probes.log"
    load.touch()
    probes.touch()
    env = logpipe_env(settings)
    processor = subprocess.Popen(
        [sys.executable, "-m", "logpipe", "process", "--input", str(load), "--input", str(probes)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(3)  # started and following
    generator = subprocess.Popen(
        [sys.executable, "-m", "logpipe", "generate", "--output", str(load), "--rate", "10000"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    appended: list[float] = []
    seen: list[float] = []
    done = threading.Event()

    def watch() -> None:
        with InfluxClient(settings) as client:
            while not done.is_set() or len(seen) < len(appended):
                visible = _count(client, "WHERE customer_id = 'probe'")
                now = time.perf_counter()
                seen.extend([now] * (visible - len(seen)))
                time.sleep(0.005)

    time.sleep(1)
    watcher = threading.Thread(target=watch)
    watcher.start()
    with probes.open("a") as out:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            out.write(f"{stamp} probe /probe 200 0.{len(appended) % 1000:03d}\n")
            out.flush()
            appended.append(time.perf_counter())
            time.sleep(0.05)
    done.set()
    watcher.join(30)
    generator.terminate()
    generator.wait()
    processor.terminate()
    processor.wait()
    return [s - a for a, s in zip(appended, seen, strict=False)]


def _stored_any(client: InfluxClient) -> bool:
    try:
        return _count(client) > 0
    except InfluxRejected:  # no database yet
        return False


def startup(url: str, work: Path, runs: int = 3) -> list[float]:
    """Seconds from starting `logpipe process` (following) on a one-line log until that line
    is queryable: interpreter, imports, Bytewax, discovery and the first write; `runs` times."""
    delays = []
    for n in range(runs):
        settings = settings_for(url, f"startup{n}", work / f"startup-state{n}")
        log = work / f"startup{n}.log"
        log.write_text("2026-01-01 00:00:00 first /a 200 0.1\n")
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "logpipe", "process", "--input", str(log)],
            env=logpipe_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            with InfluxClient(settings) as client:
                while not _stored_any(client):
                    time.sleep(0.005)
            delays.append(time.perf_counter() - started)
        finally:
            child.terminate()
            child.wait()
    return delays


def peak_rss_by_size(work: Path, sizes: list[int]) -> dict[int, float]:
    """The processor's peak RSS (MB) over a whole `process --once` of files of `sizes`
    lines, each into a fresh server: memory must not grow with the file."""
    peaks = {}
    for lines in sizes:
        log = work / f"rss-{lines}.log"
        seed_log(log, lines, seed=2)
        with LocalInfluxd(work / f"influxd-rss-{lines}") as server:
            settings = settings_for(server.url, "rss", work / f"rss-state-{lines}")
            peaks[lines] = run_logpipe(
                settings, "process", "--input", str(log), "--once"
            ).peak_rss_mb
        log.unlink()
    return peaks


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.99 + 0.5) - 1)]


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--rss-sizes", default="200000,1000000,3000000", help="file sizes (lines) for peak RSS"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="logpipe-bench-") as tmp:
        work = Path(tmp)
        log = work / "api.log"
        seed_log(log, args.lines, seed=1)
        ceilings, runs = [], []
        for n in range(args.rounds):  # each round on a fresh server, as alike as can be
            with LocalInfluxd(work / f"influxd{n}") as server:
                ceilings.append(ceiling(server.url, log, "ceiling"))
                settle(server.pid)
                settings = settings_for(server.url, "pipeline", work / f"state{n}")
                runs.append(run_logpipe(settings, "process", "--input", str(log), "--once"))
                with InfluxClient(settings) as client:
                    stored = _count(client)
                if stored != args.lines:
                    raise SystemExit(f"pipeline stored {stored} of {args.lines} lines")
        with LocalInfluxd(work / "influxd-fresh") as server:
            starts = startup(server.url, work)
            delays = freshness(server.url, work)
        sizes = [int(size) for size in args.rss_sizes.split(",") if size]
        peaks = peak_rss_by_size(work, sizes)
    ceiling_s = statistics.median(ceilings)
    pipeline_s = statistics.median(run.seconds for run in runs)
    peak_rss_mb = max(run.peak_rss_mb for run in runs)
    figures = {
        "lines": args.lines,
        "ceiling_s": ceiling_s,
        "ceiling_lines_per_s": args.lines / ceiling_s,
        "pipeline_s": pipeline_s,
        "pipeline_lines_per_s": args.lines / pipeline_s,
        "ratio": ceiling_s / pipeline_s,
        "peak_rss_mb": peak_rss_mb,
        "fresh_p50_ms": statistics.median(delays) * 1000,
        "fresh_p99_ms": p99(delays) * 1000,
        "probes": len(delays),
        "startup_s": statistics.median(starts),
        **{f"peak_rss_mb_{lines}": mb for lines, mb in peaks.items()},
    }
    each = ", ".join(f"{c:.2f}/{r.seconds:.2f} s" for c, r in zip(ceilings, runs, strict=True))
    rows = [
        f"ingest of {args.lines:,} lines (seed format, 50 customers, 30 days),"
        f" median of {args.rounds} alternate rounds (ceiling/pipeline: {each})",
        f"  ceiling: raw POSTs of 5,000    {ceiling_s:6.2f} s"
        f" {figures['ceiling_lines_per_s']:>9,.0f} lines/s",
        f"  logpipe process --once         {pipeline_s:6.2f} s"
        f" {figures['pipeline_lines_per_s']:>9,.0f} lines/s",
        f"  ratio, ceiling / pipeline time {figures['ratio']:6.2f}   (target >= 0.90)",
        f"  processor peak RSS             {peak_rss_mb:6.0f} MB  (target <= 150)",
        f"freshness at 10,000 lines/s, {len(delays)} probes: p50 {figures['fresh_p50_ms']:.0f} ms,"
        f" p99 {figures['fresh_p99_ms']:.0f} ms (target p99 <= 500)",
        f"startup, `logpipe process` to its first line stored: median {figures['startup_s']:.2f} s"
        f" ({', '.join(f'{s:.2f}' for s in starts)} s)",
        "processor peak RSS by file size: "
        + ", ".join(f"{lines:,} lines {mb:.0f} MB" for lines, mb in peaks.items())
        + " (target <= 150)",
    ]
    print("\n".join(rows))
    return figures


if __name__ == "__main__":
    main()
