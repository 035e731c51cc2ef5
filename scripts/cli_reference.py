"""Keep the README's command reference equal to what `logpipe … --help` prints.

    python scripts/cli_reference.py          # rewrite the reference in README.md
    python scripts/cli_reference.py --check  # exit 1, one line, when README.md is out of date

The reference is the block between `<!-- [[[cli-reference -->` and `<!-- ]]] -->`: the help
of `logpipe` and of every command it lists (hidden ones left out), each in a fenced block.

Help is produced by `python -m logpipe … --help` run from this checkout in a fixed
environment, so it reads the same on every machine and terminal: Click's plain formatting
(`TYPER_USE_RICH=0`: no boxes or colours, which Rich would pick by terminal and encoding),
`COLUMNS=100`, `TERM=dumb`, `NO_COLOR=1`, UTF-8, no `LOGPIPE_*` variables; trailing spaces
are stripped. Help that shows this machine's home directory or checkout path is refused,
since it would differ elsewhere. The text still depends on the installed Typer and Click
versions (their layout), so run it with the project's environment (`.venv` or `nox`).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN = "<!-- [[[cli-reference -->"
END = "<!-- ]]] -->"
OUT_OF_DATE = "README's command reference is out of date: run python scripts/cli_reference.py"

_BLOCK = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.DOTALL)
_ENVIRONMENT = {
    "COLUMNS": "100",
    "TERM": "dumb",
    "NO_COLOR": "1",
    "TYPER_USE_RICH": "0",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONUTF8": "1",
}


def _help(*args: str) -> str:
    """`logpipe <args> --help` from this checkout, in the fixed environment above."""
    environment = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(Path.home()),
        "PYTHONPATH": str(ROOT),
        **_ENVIRONMENT,
    }
    result = subprocess.run(
        [sys.executable, "-m", "logpipe", *args, "--help"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"logpipe {' '.join(args)} --help failed:\n{result.stderr}")
    text = "\n".join(line.rstrip() for line in result.stdout.strip("\n").splitlines())
    if "\x1b" in text or "\u256d" in text:
        raise SystemExit("logpipe's help came out in colour or boxes: TYPER_USE_RICH=0 ignored?")
    for value in (str(ROOT), str(Path.home())):
        if len(value) > 1 and value in text:
            raise SystemExit(
                f"logpipe {' '.join(args)} --help shows the machine-dependent {value!r}:"
                " give the option a fixed help text instead of the default"
            )
    return text


def commands() -> list[str]:
    """The commands `logpipe --help` lists, in its order (hidden ones left out)."""
    import typer

    sys.path.insert(0, str(ROOT))
    from logpipe.cli import app

    group = typer.main.get_command(app)
    listed = getattr(group, "commands", None)
    if not isinstance(listed, dict):
        raise SystemExit("logpipe's Typer app is not a group of commands")
    return [name for name, command in listed.items() if not getattr(command, "hidden", False)]


def reference() -> str:
    """The generated block, markers included."""
    parts = [BEGIN]
    for args in [(), *((name,) for name in commands())]:
        command = " ".join(("logpipe", *args))
        parts.append(f"#### `{command}`\n\n```\n$ {command} --help\n{_help(*args)}\n```")
    parts.append(END)
    return "\n\n".join(parts)


def updated(readme: str, block: str) -> str:
    """`readme` with its reference block replaced by `block`."""
    if len(_BLOCK.findall(readme)) != 1:
        raise SystemExit(f"README.md needs exactly one block from {BEGIN} to {END}")
    return _BLOCK.sub(lambda _: block, readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if README.md is out of date; change nothing"
    )
    check = parser.parse_args(argv).check
    readme = README.read_text(encoding="utf-8")
    new = updated(readme, reference())
    if check:
        if new != readme:
            print(OUT_OF_DATE, file=sys.stderr)
            return 1
        return 0
    if new != readme:
        README.write_text(new, encoding="utf-8")
        print("README.md: command reference rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
