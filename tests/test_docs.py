"""The README cannot drift from the code: every setting and every command is documented."""

from pathlib import Path

from logpipe.cli import app
from logpipe.config import Settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    missing = [
        f"LOGPIPE_{name.upper()}"
        for name in Settings.model_fields
        if f"`LOGPIPE_{name.upper()}`" not in README
    ]
    assert not missing, f"settings missing from README.md: {missing}"


def test_every_command_is_in_the_readme():
    names = [command.name or command.callback.__name__ for command in app.registered_commands]
    assert [name for name in names if f"logpipe {name}" not in README] == []
