"""Generator pacing in real time: how close `logpipe generate --rate R` comes to R.

python bench/generate.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path


def paced(rate: int, total: int, work: Path) -> tuple[float, int]:
    """(seconds taken, lines written) by `logpipe generate --rate rate --total total`."""
    out = work / f"rate-{rate}.log"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "logpipe", "generate", "--output", str(out), "--rate", str(rate),
         "--total", str(total), "--seed", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    with out.open("rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return seconds, lines


def main() -> None:
    print("generate pacing (wall time includes ~0.3 s of Python start-up)")
    with tempfile.TemporaryDirectory(prefix="logpipe-bench-gen-") as tmp:
        for rate, total in ((20_000, 200_000), (100_000, 1_000_000)):
            seconds, lines = paced(rate, total, Path(tmp))
            expected = total / rate
            print(
                f"  --rate {rate:>7,} --total {total:>9,}: {seconds:6.2f} s for {lines:,} lines,"
                f" {100 * (seconds - expected) / expected:+.1f} % off {expected:.0f} s"
                " (target within 5 %)"
            )


if __name__ == "__main__":
    main()
