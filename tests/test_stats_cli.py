"""`logpipe stats`: its rendering, pure; and the real command against a real influxd and a
real API, which it must agree with to the byte."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import date, timedelta

import pytest
from pydantic import SecretStr
from rich.console import Console
from typer.testing import CliRunner

from logpipe.cli import app
from logpipe.config import load_settings
from logpipe.stats import DayStats, stats_json, utc_now
from logpipe.stats_cli import asked, bar, bar_cells, csv_text, summary, table
from tests.conftest import logpipe_env, run_process, running_api, write_lines

runner = CliRunner()

OCT_1 = DayStats(date(2026, 10, 1), 4, 3, 1, 75.0, 0.2125, 0.225, 0.3)
OCT_2 = DayStats(date(2026, 10, 2), 1, 1, 0, 100.0, 0.05, 0.05, 0.05)
LINES = [
    "2026-10-01 10:00:00 cust_1 /a 200 0.100",
    "2026-10-01 11:00:00 cust_1 /a 500 0.200",
    "2026-10-01 11:30:00 cust_1 /a 200 0.250",
    "2026-10-01 12:00:00 cust_1 /a 404 0.300",  # a client's error: not failed
    "2026-10-02 09:00:00 cust_1 /b 201 0.050",
    "2026-10-02 12:00:00 cust_2 /a 503 0.700",
]
RANGE = ["--from-date", "2026-10-01", "--to-date", "2026-10-02"]
QUERY = {"from_date": "2026-10-01", "to_date": "2026-10-02"}
SCOPED_KEY = "cust1-0123456789abcdef"
ADMIN_KEY = "admin-0123456789abcdef"


# --- rendering, pure -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "failed", "busiest", "width", "cells"),
    [
        (100, 0, 100, 20, (20, 0)),  # the busiest day fills the bar
        (50, 0, 100, 20, (10, 0)),
        (25, 0, 100, 10, (3, 0)),  # 2.5 cells: rounded half up
        (1, 0, 1000, 20, (1, 0)),  # a day with requests is never an empty bar
        (100, 25, 100, 20, (15, 5)),  # the failed part is the failed share of the bar
        (100, 1, 100, 20, (19, 1)),  # 0.2 cells of failures still show
        (10, 10, 100, 20, (0, 2)),
        (1, 1, 1000, 20, (0, 1)),
    ],
)
def test_bar_cells(total, failed, busiest, width, cells):
    assert bar_cells(total, failed, busiest, width) == cells


def test_the_failed_part_of_a_bar_is_red_and_another_shape():
    shown = bar(OCT_1, busiest=4)  # 16 cells, a quarter failed
    assert shown.plain == "█" * 12 + "▒" * 4
    (failed,) = [span for span in shown.spans if span.style == "red"]
    assert (failed.start, failed.end) == (12, 16)


def test_the_table_has_a_row_of_figures_per_day_within_80_columns():
    busy = DayStats(date(2026, 10, 3), 123_456, 122_222, 1_234, 99.0004, 1.5, 2.25, 99.9999)
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(table([OCT_1, OCT_2, busy]))
    lines = out.getvalue().splitlines()
    assert max(map(len, lines)) <= 80
    assert lines[1].split() == [
        "2026-10-01",
        "4",
        "1",
        "75.00",
        "212.5",
        "225.0",
        "300.0",
        "▒",
    ]  # failures never round away
    assert lines[2].split() == ["2026-10-02", "1", "0", "100.00", "50.0", "50.0", "50.0", "█"]
    assert lines[3].split() == [
        "2026-10-03", "123,456", "1,234", "99.00", "1,500.0", "2,250.0", "99,999.9", "█" * 15 + "▒"
    ]  # fmt: skip


def test_the_summary_adds_up_the_range():
    document = json.loads(stats_json("cust_1", OCT_1.date, OCT_2.date, 500, [OCT_1, OCT_2]))
    assert summary(document) == (
        "cust_1 from 2026-10-01 to 2026-10-02: 5 requests on 2 days, 1 failed"
        " (status >= 500), uptime 80.00 %, average latency 180.0 ms"
    )


def test_csv_has_the_field_names_and_a_row_per_day():
    assert csv_text([OCT_1, OCT_2]) == (
        "date,total_requests,successful_requests,failed_requests,uptime,average_latency,"
        "median_latency,p99_latency\r\n"
        "2026-10-01,4,3,1,75.0,0.2125,0.225,0.3\r\n"
        "2026-10-02,1,1,0,100.0,0.05,0.05,0.05\r\n"
    )


def test_the_json_body_has_the_apis_keys_in_order():
    assert stats_json(None, OCT_2.date, OCT_2.date, 500, [OCT_2]) == (
        b'{"customer_id":null,"from_date":"2026-10-02","to_date":"2026-10-02",'
        b'"failure_status":500,"days":[{"date":"2026-10-02","total_requests":1,'
        b'"successful_requests":1,"failed_requests":0,"uptime":100.0,'
        b'"average_latency":0.05,"median_latency":0.05,"p99_latency":0.05}]}'
    )


# --- the command, against a real influxd and API ---------------------------------------------


@pytest.fixture(scope="module")
def stored(influxd, tmp_path_factory):
    """LINES stored by a real `logpipe process --once`, for the module's tests (they only
    read); the settings."""
    directory = tmp_path_factory.mktemp("stats_cli")
    settings = load_settings(
        influx_url=influxd.url, influx_database="stats_cli_tests", state_dir=directory / "state"
    )
    log = directory / "api.log"
    log.write_text("".join(f"{line}\n" for line in LINES))
    run_process(settings, "--input", str(log), "--once")
    return settings


@pytest.fixture(scope="module")
def api(stored):
    with running_api(stored) as client:
        yield client


def _stats(settings, *args: str):
    return runner.invoke(app, ["stats", *args], env={**logpipe_env(settings), "COLUMNS": "100"})


def test_the_table_shows_each_days_figures_and_the_totals(stored):
    result = _stats(stored, "cust_1", *RANGE)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:7] for line in result.stdout.splitlines()[1:3]}
    assert rows == {
        "2026-10-01": ["4", "1", "75.00", "212.5", "225.0", "300.0"],
        "2026-10-02": ["1", "0", "100.00", "50.0", "50.0", "50.0"],
    }
    assert result.stdout.splitlines()[-1] == (
        "cust_1 from 2026-10-01 to 2026-10-02: 5 requests on 2 days, 1 failed"
        " (status >= 500), uptime 80.00 %, average latency 180.0 ms"
    )


@pytest.mark.parametrize(
    ("who", "route"), [("cust_1", "/customers/cust_1/stats"), ("--all", "/stats")]
)
def test_json_is_the_apis_body_to_the_byte(stored, api, who, route):
    answer = api.get(route, params=QUERY)
    assert answer.status_code == 200, answer.text
    direct = _stats(stored, who, *RANGE, "--json")
    assert direct.exit_code == 0, direct.output
    assert direct.stdout == answer.text + "\n"
    through_api = _stats(stored, who, *RANGE, "--json", "--api", str(api.base_url))
    assert through_api.exit_code == 0, through_api.output
    assert through_api.stdout == direct.stdout


def test_csv_rows_are_the_apis_values(stored, api):
    days = api.get("/stats", params=QUERY).json()["days"]
    result = _stats(stored, "--all", *RANGE, "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [
        {name: type(day[name])(row[name]) for name in row}
        for row, day in zip(rows, days, strict=True)
    ] == days
    assert len(rows) == len(days) == 2


def test_the_default_range_is_the_last_30_utc_days(settings_env):
    today = utc_now().date()
    days = [today - timedelta(days=n) for n in (30, 29, 0)]
    write_lines(settings_env, [f"{day} 12:00:00 cust_1 /a 200 0.1" for day in days])
    result = runner.invoke(app, ["stats", "cust_1", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert (answer["from_date"], answer["to_date"]) == (str(days[1]), str(today))
    assert [day["date"] for day in answer["days"]] == [str(days[1]), str(today)]


def test_no_requests_in_the_range_is_one_line_and_exit_code_1(stored, api):
    for via in ([], ["--api", str(api.base_url)]):
        result = _stats(stored, "cust_9", *RANGE, *via)
        assert result.exit_code == 1
        (line,) = result.output.splitlines()
        assert (
            line.startswith("Error: ")
            and "no requests for cust_9 from 2026-10-01 to 2026-10-02" in line
        )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["cust_1", "--from-date", "2026-02-30"], "--from-date: '2026-02-30' is not a real date"),
        (["cust_1", "--from-date", "1.10.2026"], "is not a date in the form YYYY-MM-DD"),
        (["cust_1", *RANGE[:2], "--to-date", "2026-09-30"], "--to-date 2026-09-30 is before"),
        (["cust_1", "--from-date", "2020-01-01", "--to-date", "2026-01-01"], "at most 366 days"),
        (["cust_1", "--to-date", "2262-04-11"], "InfluxDB stores days from"),
        (["x' OR '1'='1"], "is not a customer id"),
        (["cust_1", "--all"], "give a CUSTOMER or --all, not both"),
        ([], "give a CUSTOMER, or --all"),
        (["cust_1", "--json", "--csv"], "give --json or --csv, not both"),
        (["cust_1", "--api", "http://127.0.0.1:1", "--database", "x"], "not with --api"),
    ],
)
def test_usage_mistakes_are_one_line_and_exit_code_2(tmp_path, args, says):
    result = subprocess.run(
        [sys.executable, "-m", "logpipe", "stats", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: ") and says in line
    assert result.stdout == ""


def test_what_the_api_refuses_is_one_line_and_exit_code_1(stored, monkeypatch):
    keys = SecretStr(f"{SCOPED_KEY}=cust_1,{ADMIN_KEY}=*")
    with running_api(stored.model_copy(update={"api_keys": keys})) as client:
        url = str(client.base_url)
        monkeypatch.setenv("LOGPIPE_API_KEY", SCOPED_KEY)
        allowed = _stats(stored, "cust_1", *RANGE, "--json", "--api", url)
        assert allowed.exit_code == 0, allowed.output
        assert json.loads(allowed.stdout)["days"][0]["total_requests"] == 4
        for args, says in [
            (["cust_2"], "answered 403: this API key may not see customer cust_2"),
            (["--all"], "answered 403: this API key may see only its own customer"),
            (["cust_1", "--api-key", "wrong-0123456789abcdef"], "answered 401: unknown API key"),
        ]:
            result = _stats(stored, *args, *RANGE, "--api", url)
            assert result.exit_code == 1
            (line,) = result.output.splitlines()
            assert line == f"Error: the API at {url} {says}"
        monkeypatch.delenv("LOGPIPE_API_KEY")
        result = _stats(stored, "cust_1", *RANGE, "--api", url)
        assert result.exit_code == 1 and "answered 401: send the header" in result.output


def test_without_from_date_the_range_is_the_30_days_ending_on_to_date():
    today = date(2026, 12, 1)
    alone = asked("cust_1", everyone=False, from_date=None, to_date="2026-06-30", today=today)
    assert (alone.first, alone.last) == (date(2026, 6, 1), date(2026, 6, 30))
    default = asked(None, everyone=True, from_date=None, to_date=None, today=today)
    assert (default.first, default.last) == (date(2026, 11, 2), today)
