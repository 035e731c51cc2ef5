"""The command line: help everywhere, and user mistakes end in one clear line, exit code 1."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from logpipe import __version__
from logpipe.cli import app
from logpipe.influxd import free_port

runner = CliRunner()
COMMANDS = ["generate", "process", "serve", "stats", "run-all", "clean", "config"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert f"Example: logpipe {command}" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"logpipe {__version__}"


def test_missing_input_file_is_one_line(tmp_path):
    result = runner.invoke(app, ["process", "--input", str(tmp_path / "nope.log"), "--once"])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"Error: input {tmp_path / 'nope.log'} does not exist or is not a file"
    )


def test_unreachable_influxdb_is_one_line(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("")
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(
        app,
        [
            "process",
            "--input",
            str(log),
            "--once",
            "--influx-url",
            url,
            "--state-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: InfluxDB at {url} is unreachable")


def test_bad_setting_in_environment_names_the_variable(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("")
    result = runner.invoke(
        app, ["process", "--input", str(log)], env={"LOGPIPE_INFLUX_URL": "localhost:8086"}
    )
    assert result.exit_code == 1
    assert "LOGPIPE_INFLUX_URL" in result.output and "http://" in result.output


def test_bad_flag_value_is_refused_before_anything_runs(tmp_path):
    result = runner.invoke(app, ["generate", "--output", str(tmp_path / "x"), "--rate", "-1"])
    assert result.exit_code == 2
    assert "--rate" in result.output
    assert not (tmp_path / "x").exists()


def test_config_shows_values_and_where_they_came_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("LOGPIPE_BATCH_SIZE=777\n")
    monkeypatch.setenv("LOGPIPE_INFLUX_TOKEN", "very-secret-token")
    monkeypatch.setenv("LOGPIPE_CACHE_TTL", "9")
    result = runner.invoke(app, ["config", "--database", "flagged"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[1:]}
    assert rows["LOGPIPE_BATCH_SIZE"] == ["777", ".env"]
    assert rows["LOGPIPE_CACHE_TTL"] == ["9.0", "environment"]
    assert rows["LOGPIPE_INFLUX_DATABASE"] == ["flagged", "flag"]
    assert rows["LOGPIPE_INFLUX_URL"] == ["http://127.0.0.1:8086", "default"]
    assert rows["LOGPIPE_INFLUX_TOKEN"] == ["**********", "environment"]
    assert "very-secret-token" not in result.output


def test_config_and_errors_never_show_the_password_of_the_influx_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    port = free_port()  # nothing listens there
    env = {"LOGPIPE_INFLUX_URL": f"http://admin:s3cret@127.0.0.1:{port}", "COLUMNS": "200"}
    shown = runner.invoke(app, ["config"], env=env)
    assert shown.exit_code == 0, shown.output
    rows = {line.split()[0]: line.split()[1:] for line in shown.output.splitlines()[1:]}
    assert rows["LOGPIPE_INFLUX_URL"] == [f"http://admin:***@127.0.0.1:{port}", "environment"]
    log = tmp_path / "a.log"
    log.write_text("")
    failed = runner.invoke(
        app, ["process", "--input", str(log), "--once", "--state-dir", str(tmp_path)], env=env
    )
    assert failed.exit_code == 1
    assert f"Error: InfluxDB at http://admin:***@127.0.0.1:{port} is unreachable" in failed.output
    assert "s3cret" not in shown.output + failed.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["generate", "--output", "x", "--rate", "-1"], "Invalid value for '--rate'"),
        (["process", "--inptu", "x"], "No such option: --inptu"),
        (["nosuch"], "No such command"),
    ],
)
def test_usage_mistakes_through_the_console_script_are_one_line(tmp_path, args, says):
    result = subprocess.run(
        [sys.executable, "-m", "logpipe", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and lines[0].startswith("Error: ")
    assert "Traceback" not in result.stderr


def test_help_in_a_terminal_shows_the_bracketed_text():
    """Rich read "[env LOGPIPE_INFLUX_URL]" as markup and showed nothing of it."""
    env = {"COLUMNS": "120", "FORCE_COLOR": "1", "TERM": "xterm-256color", "PATH": "/usr/bin"}
    shown = {
        command: subprocess.run(
            [sys.executable, "-m", "logpipe", command, "--help"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        for command in ("process", "generate")
    }
    assert "[env LOGPIPE_INFLUX_URL]" in shown["process"]
    assert "[env LOGPIPE_FORMAT;" in shown["process"]
    assert "[default: 10, or 0 with --backfill-days" in " ".join(shown["generate"].split())


def test_children_of_the_tests_take_ctrl_c():
    """The tests stop logpipe with SIGINT; a suite started from a background shell had it
    ignored in every child (conftest restores Python's handler)."""
    shown = subprocess.run(
        [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT))"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "default_int_handler" in shown
