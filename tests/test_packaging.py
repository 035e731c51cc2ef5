"""The wheel, installed into an empty virtual environment as pipx does, is a working tool."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_wheel_in_an_empty_venv_gives_a_working_logpipe(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("logpipe-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run(
        [bin_dir / "python", "-m", "pip", "install", "-q", str(wheel)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip

    version = subprocess.run([bin_dir / "logpipe", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("logpipe 0.")
    out = tmp_path / "api.log"
    generated = subprocess.run(
        [bin_dir / "logpipe", "generate", "--output", str(out), "--total", "5", "--seed", "1",
         "--start", "2026-01-01"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    assert len(out.read_text().splitlines()) == 5
    as_module = subprocess.run(
        [bin_dir / "python", "-m", "logpipe", "serve", "--help"], capture_output=True, text=True
    )
    assert as_module.returncode == 0 and "Example: logpipe serve" in as_module.stdout
    # the package carries no test or benchmark code
    listing = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)], capture_output=True, text=True
    ).stdout
    assert "logpipe/serve/__init__.py" in listing and "tests/" not in listing
    # the dashboard ships whole: its page, script, style and the vendored chart library
    for asset in ("index.html", "dashboard.js", "dashboard.css", "vendor/chart.umd.min.js"):
        assert f"logpipe/serve/dashboard/{asset}" in listing, asset
    assert "logpipe/serve/dashboard/vendor/chart.js-LICENSE.md" in listing
