"""The README cannot drift from the code: every setting and every command is documented,
the command reference is the commands' own `--help`, and its links lead somewhere."""

import re
import subprocess
import sys
from pathlib import Path

from logpipe.cli import app
from logpipe.config import Settings

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    """The text of the README's `## title` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\b.*?(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README.md has no section '## {title}'"
    return match.group(0)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, no punctuation but `-`, spaces as `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_is_a_users_guide_in_this_order():
    titles = [title.split(" (")[0] for title in re.findall(r"^## (.*)$", README, re.M)]
    assert titles == [
        "Quickstart",
        "Install",
        "Commands",
        "The dashboard",
        "The API",
        "Settings",
        "Operations",
        "Performance",
        "Development",
    ]


def test_quickstart_runs_everything_and_the_tests_with_scripts_that_exist():
    quickstart = _section("Quickstart")
    assert "```bash\n./scripts/run-all.sh\n```" in quickstart
    assert "```bash\n./scripts/test.sh\n```" in quickstart
    for script in re.findall(r"\./(scripts/[\w.-]+\.sh)", README):
        assert (ROOT / script).is_file(), f"README.md runs {script}, which does not exist"


def test_every_setting_is_in_the_readme_table():
    settings = _section("Settings")
    missing = [
        f"LOGPIPE_{name.upper()}"
        for name in Settings.model_fields
        if f"`LOGPIPE_{name.upper()}`" not in settings
    ]
    assert not missing, f"settings missing from README.md: {missing}"


def test_every_command_is_in_the_readme():
    names = [
        command.name or command.callback.__name__
        for command in app.registered_commands
        if not command.hidden
    ]
    commands = _section("Commands")
    assert [name for name in names if f"`logpipe {name.replace('_', '-')}`" not in commands] == []


def test_command_reference_matches_the_help():
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    out_of_date = "README's command reference is out of date: run python scripts/cli_reference.py"
    assert check.returncode == 0, check.stderr.strip() or out_of_date


def test_performance_shows_the_current_figures_and_links_the_history():
    performance = _section("Performance")
    assert "nox -s bench" in performance
    assert "(bench/RESULTS.md)" in performance
    tables = [line for line in performance.splitlines() if line.startswith("|---")]
    assert len(tables) == 1, "README's Performance has one table; runs go to bench/RESULTS.md"


def _anchors(document: Path) -> set[str]:
    """The anchors of a Markdown file's headings (those outside code blocks)."""
    text = re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(heading) for heading in re.findall(r"^#+ (.*)$", text, re.M)}


def _broken_links(document: Path) -> list[str]:
    """The links of a Markdown file to a file or a heading that does not exist."""
    text = re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = document.parent / path if path else document
        if not linked.exists() or (anchor and anchor not in _anchors(linked)):
            broken.append(target)
    return broken


def test_links_of_the_readme_and_the_results_resolve():
    assert _broken_links(ROOT / "README.md") == []
    assert _broken_links(ROOT / "bench" / "RESULTS.md") == []


def test_the_readme_shows_the_dashboard_screenshots_that_exist():
    pictures = re.findall(r"(docs/[\w.-]+\.png)", _section("The dashboard"))
    assert sorted(set(pictures)) == ["docs/dashboard-desktop.png", "docs/dashboard-phone.png"]
    for picture in pictures:
        assert (ROOT / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture
