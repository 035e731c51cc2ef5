"""generate -> process --once -> InfluxDB -> the API, all real, checked against the file."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from logpipe.cli import app
from logpipe.config import load_settings
from tests.conftest import count_points, logpipe_env, running_api
from tests.reference import daily_stats

runner = CliRunner()
TOTAL = 20_000


@pytest.fixture(scope="module")
def loaded(influxd, tmp_path_factory):
    """20,000 generated lines stored by `process --once`, once for the module's tests."""
    work = tmp_path_factory.mktemp("end_to_end")
    settings = load_settings(
        influx_url=influxd.url,
        influx_database="end_to_end",
        state_dir=work / "state",
        snapshot_interval=0.5,
    )
    env = logpipe_env(settings)
    log = work / "api.log"
    # as in the issue: no --rate, so a backfill is written as fast as possible
    generate = f"generate --output {log} --total {TOTAL} --seed 1 --backfill-days 7 --customers 6"
    result = runner.invoke(app, generate.split(), env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["process", "--input", str(log), "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert f"stored {TOTAL}, rejected 0" in result.output
    return settings, log, env


def test_every_line_becomes_exactly_one_point(loaded):
    settings, log, env = loaded
    assert count_points(settings) == TOTAL
    # a second run resumes at the end: nothing read, nothing doubled
    result = runner.invoke(app, ["process", "--input", str(log), "--once"], env=env)
    assert "read 0 lines" in result.output
    assert count_points(settings) == TOTAL


def test_api_daily_stats_equal_an_independent_computation(loaded):
    settings, log, _ = loaded
    expected = daily_stats(log)
    expected.pop("*")
    assert len(expected) == 6
    first_day = min(day for days in expected.values() for day in days)
    last_day = max(day for days in expected.values() for day in days)
    with running_api(settings) as client:
        for customer, days in expected.items():
            response = client.get(
                f"/customers/{customer}/stats", params={"from": first_day, "to": last_day}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["failure_status"] == 500
            assert [day["date"] for day in body["days"]] == sorted(days)
            for got in body["days"]:
                want = days[got["date"]]
                for name in ("total_requests", "successful_requests", "failed_requests"):
                    assert got[name] == want[name], (customer, got["date"], name)
                for name in ("uptime", "average_latency", "median_latency", "p99_latency"):
                    assert got[name] == pytest.approx(want[name], rel=1e-9), (customer, name)


def test_rejected_lines_go_to_the_dead_letter_file_and_valid_ones_are_stored(
    settings_env, tmp_path
):
    log = tmp_path / "mixed.log"
    log.write_bytes(
        b"2026-10-06 09:42:36 cust_1 /a 200 0.5\n"
        b"not a request\n"
        b"2026-10-06 09:42:36 cust_1 /a 200 0.5\r\n"
        b"2026-10-06 09:42:37 cust_1 /a 999 0.5\n"
        b"2026-10-06 09:42:38 cust_2 /a 503 0.25"  # no final newline: left for the next run
    )
    result = runner.invoke(app, ["process", "--input", str(log), "--once"])
    assert result.exit_code == 0, result.output
    assert "read 4 lines: stored 2, rejected 2" in result.output
    assert count_points(settings_env) == 2
    with log.open("ab") as f:
        f.write(b"\n")
    result = runner.invoke(app, ["process", "--input", str(log), "--once"])
    assert "read 1 lines: stored 1, rejected 0" in result.output
    assert count_points(settings_env) == 3
    dead = settings_env.dead_letter_path.read_text().splitlines()
    assert len(dead) == 2 and '"raw": "not a request"' in dead[0] and "status" in dead[1]
