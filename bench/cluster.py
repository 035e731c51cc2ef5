"""Cluster benchmark: 1 and 2 `logpipe process --once` processes (Bytewax cluster mode)
against one influxd, and the raw POST ceiling, alternately, each on a fresh server.

    python bench/cluster.py [--lines 1000000] [--files 8] [--rounds 2]

Data: `--lines` seed-format lines over 30 days for 50 customers, cut into `--files` files
(each file belongs to one of 64 partitions by its identity; process p of n reads the
partitions p mod n, so the split between processes is whatever the files hash to, reported).
A run's time is from starting the processes to the last one's exit. On a 2-core machine the
processes and InfluxDB share the cores: the figures say what one host gives, which is what
docs/scaling.md builds on.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import logpipe_env, seed_log, settings_for, settle
from ingest import ceiling

from logpipe.influxd import LocalInfluxd, free_port


def split(log: Path, files: int) -> list[Path]:
    """The log's lines dealt round-robin into `files` files."""
    parts = [log.with_name(f"part-{n}.log") for n in range(files)]
    lines = log.read_bytes().splitlines(keepends=True)
    for n, part in enumerate(parts):
        part.write_bytes(b"".join(lines[n::files]))
    return parts


def cluster(url: str, parts: list[Path], processes: int, state: Path) -> tuple[float, list[int]]:
    """Seconds for `processes` cluster processes to store every part (from a fresh `state`
    directory: nothing read before); the lines each read."""
    settings = settings_for(url, f"cluster{processes}", state)
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    inputs = [arg for part in parts for arg in ("--input", str(part))]
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "logpipe", "process", *inputs, "--once"]
            + (["--addresses", addresses, "--process-id", str(p)] if processes > 1 else []),
            env=logpipe_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    outputs = [child.communicate()[1] for child in children]
    seconds = time.perf_counter() - started
    for child, output in zip(children, outputs, strict=True):
        if child.returncode != 0:
            raise SystemExit(f"a cluster process failed:\n{output}")
    read = [int(m.group(1)) for out in outputs if (m := re.search(r"read (\d+) lines", out))]
    return seconds, read


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="logpipe-bench-cluster-") as tmp:
        work = Path(tmp)
        log = work / "api.log"
        seed_log(log, args.lines, seed=5)
        parts = split(log, args.files)
        runs: dict[str, list[float]] = {"ceiling": [], "1 process": [], "2 processes": []}
        shares: list[int] = []
        for round_ in range(args.rounds):
            for name in runs:
                with LocalInfluxd(work / f"influxd-{round_}-{name[0]}") as influx:
                    if name == "ceiling":
                        runs[name].append(ceiling(influx.url, log, "ceiling"))
                    else:
                        state = work / f"state-{round_}-{name[0]}"
                        seconds, read = cluster(influx.url, parts, int(name[0]), state)
                        if sum(read) != args.lines:
                            raise SystemExit(f"{name} read {sum(read)} of {args.lines} lines")
                        runs[name].append(seconds)
                        shares = read if name == "2 processes" else shares
                    settle(influx.pid)
        ceiling_rate = args.lines / statistics.median(runs["ceiling"])
        print(f"{args.lines:,} lines in {args.files} files, {args.rounds} rounds, medians:")
        for name, seconds in runs.items():
            rate = args.lines / statistics.median(seconds)
            each = ", ".join(f"{s:.2f}" for s in seconds)
            print(f"  {name:12} {rate:>9,.0f} lines/s  ({each} s)  {rate / ceiling_rate:.2f}")
        print(f"  lines read by each of the 2 processes: {shares}")


if __name__ == "__main__":
    main()
