"""The status files a `generate` or `process` run keeps in the state directory for
`run-all`'s live view: one JSON object, rewritten whole, with the time of writing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from logpipe.private import open_private

GENERATE_STATUS = "generate-status.json"
PROCESS_STATUS = "process-status.json"


def write_status(path: Path, values: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    with open_private(temporary, "w") as file:
        file.write(json.dumps({**values, "time": time.time()}))
    temporary.replace(path)  # readers never see half a file


def read_status(path: Path) -> dict[str, Any]:
    """The values last written; {} while there is no (readable) file."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}
