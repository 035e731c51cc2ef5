"""Sessions: `nox -s tests` (pytest, real influxd and Chromium), `nox -s lint` (ruff, mypy),
`nox -s bench`, `nox -s screenshots` (the README's pictures of the dashboard)."""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    # the C fast path is optional when installing, not here: fail if it did not build
    env = {"LOGPIPE_REQUIRE_FASTPARSE": "1"}
    session.run("pytest", "-q", "-ra", *session.posargs, env=env)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6,<1", "mypy>=1.10,<2", "-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks against a fresh private influxd; prints the figures the README quotes."""
    session.install("-e", ".")
    session.run("python", "bench/ingest.py")
    session.run("python", "bench/api.py")
    session.run("python", "bench/generate.py")


@nox.session(python="3.11")
def screenshots(session: nox.Session) -> None:
    """docs/dashboard-*.png, taken in the headless Chromium the browser tests use."""
    session.install("-e", ".[test]")
    session.run("python", "scripts/screenshots.py")
