"""
Garbage-collector policy around Pulumi programs: what is frozen, when, and that it is undone.

The provider type modules a component imports live until the process ends, so the first
construction freezes them out of later collections; a process that builds many components
must not keep freezing (its garbage would never be collected), and the fork of
`synth --all-targets` unfreezes once its workers are done. Fresh interpreters: gc state is
process-wide.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "examples/mistral-7b-eu.yaml"


def _run(script: str, workers: int = 1) -> dict:
    env_line = f"import os; os.environ['MDEPLOY_SYNTH_WORKERS'] = '{workers}'\n"
    done = subprocess.run(
        [sys.executable, "-c", env_line + textwrap.dedent(script)],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_only_the_construction_that_imports_providers_freezes():
    out = _run(f"""
        import gc, json
        from pathlib import Path
        from mdeploy.deploy.synth import synth
        from mdeploy.spec import load_spec
        calls, real_freeze = [], gc.freeze
        gc.freeze = lambda: (calls.append(gc.get_count()), real_freeze())[1]
        loaded = load_spec(Path("{EXAMPLE}"))
        synth(loaded, "azure")
        first, frozen = len(calls), gc.get_freeze_count()
        synth(loaded, "azure")
        print(json.dumps({{"first": first, "frozen": frozen > 100_000,
                           "second": len(calls) - first, "enabled": gc.isenabled()}}))
    """)
    assert out == {"first": 1, "frozen": True, "second": 0, "enabled": True}


def test_a_caller_that_disabled_the_collector_keeps_it_disabled():
    out = _run(f"""
        import gc, json
        from pathlib import Path
        from mdeploy.deploy.synth import synth
        from mdeploy.spec import load_spec
        gc.disable()
        synth(load_spec(Path("{EXAMPLE}")), "gcp")
        print(json.dumps({{"enabled": gc.isenabled()}}))
    """)
    assert out == {"enabled": False}


def test_the_forked_workers_leave_nothing_frozen_in_the_parent():
    out = _run(
        f"""
        import gc, json
        from pathlib import Path
        from mdeploy.deploy.synth import synth_targets
        from mdeploy.spec import load_spec
        results, _ = synth_targets(load_spec(Path("{EXAMPLE}")), all_targets=True)
        print(json.dumps({{"targets": [r.target for r in results],
                           "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}}))
        """,
        workers=2,
    )
    assert out == {"targets": ["aws", "azure", "gcp", "kubernetes"], "frozen": 0, "enabled": True}
