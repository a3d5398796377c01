"""
Run a Python snippet in a fresh interpreter and read the JSON it prints last.

For checks of process-wide state (which modules got imported, the garbage collector) that the
test process itself, with everything other tests imported, cannot show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_json(script: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """The last stdout line of `script` (dedented) as JSON; a non-zero exit fails with stderr."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
