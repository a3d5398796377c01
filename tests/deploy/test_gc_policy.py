"""
Garbage-collector policy (mdeploy/_gc.py): paused while planning and building a component,
frozen afterwards only in the CLI's short-lived process, and undone around synth's fork.

A library caller (this test process, a service) must never get frozen objects: its garbage
cycles would not be collected again. Fresh interpreters, since gc state is process-wide.
"""

from __future__ import annotations

import textwrap

from freshpython import run_json

EXAMPLE = "examples/mistral-7b-eu.yaml"
PRELUDE = f"""
import gc, json
from pathlib import Path
freezes, real_freeze = [], gc.freeze
gc.freeze = lambda: (freezes.append(1), real_freeze())[1]
from mdeploy.spec import load_spec
loaded = load_spec(Path("{EXAMPLE}"))
"""


def _run(script: str, workers: int = 1) -> dict:
    return run_json(PRELUDE + textwrap.dedent(script), env={"MDEPLOY_SYNTH_WORKERS": str(workers)})


def test_a_library_caller_gets_the_pause_and_never_a_freeze():
    out = _run("""
        from mdeploy.deploy.synth import synth
        from mdeploy.plan import make_plan
        synth(loaded, "azure")
        make_plan(loaded.spec)
        print(json.dumps({"freezes": len(freezes), "frozen": gc.get_freeze_count(),
                          "enabled": gc.isenabled()}))
    """)
    assert out == {"freezes": 0, "frozen": 0, "enabled": True}


def test_the_cli_process_freezes_what_planning_and_the_provider_imports_leave():
    out = _run("""
        from mdeploy._gc import freeze_after_long_lived_phases
        freeze_after_long_lived_phases()
        from mdeploy.plan import make_plan
        from mdeploy.deploy.synth import synth
        make_plan(loaded.spec)
        after_plan = len(freezes)
        synth(loaded, "azure")  # plans again, then builds the component
        print(json.dumps({"after_plan": after_plan, "after_synth": len(freezes),
                          "many_frozen": gc.get_freeze_count() > 100_000,
                          "enabled": gc.isenabled()}))
    """)
    assert out == {"after_plan": 1, "after_synth": 3, "many_frozen": True, "enabled": True}


def test_the_console_entry_point_turns_freezing_on():
    out = _run("""
        import sys
        import mdeploy._gc
        from mdeploy.cli.app import main
        sys.argv = ["mdeploy", "--version"]
        try:
            main()
        except SystemExit:
            pass
        print(json.dumps({"freeze": mdeploy._gc._freeze}))
    """)
    assert out == {"freeze": True}


def test_a_caller_that_disabled_the_collector_keeps_it_disabled():
    out = _run("""
        from mdeploy.deploy.synth import synth
        gc.disable()
        synth(loaded, "gcp")
        print(json.dumps({"enabled": gc.isenabled()}))
    """)
    assert out == {"enabled": False}


def test_the_forked_workers_leave_nothing_frozen_in_the_parent():
    out = _run(
        """
        from mdeploy.deploy.synth import synth_targets
        results, _ = synth_targets(loaded, all_targets=True)
        print(json.dumps({"targets": [r.target for r in results], "forked": len(freezes),
                          "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}))
        """,
        workers=2,
    )
    assert out == {
        "targets": ["aws", "azure", "gcp", "kubernetes"],
        "forked": 1,
        "frozen": 0,
        "enabled": True,
    }
