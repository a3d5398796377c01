"""Progress: engine events → a live table on a terminal, one line per event in CI."""

from __future__ import annotations

import io

from pulumi.automation import EngineEvent
from rich.console import Console

from mdeploy.deploy.progress import Progress, interactive_terminal

URN = "urn:pulumi:s::mdeploy::mdeploy:kubernetes:Endpoint$kubernetes:apps/v1:Deployment::deployment"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def _event(kind: str, op: str = "create", urn: str = URN, **extra) -> EngineEvent:
    meta = {"op": op, "urn": urn, "type": urn.split("::")[-2].split("$")[-1], "provider": ""}
    bodies = {
        "pre": {"resourcePreEvent": {"metadata": meta}},
        "done": {"resOutputsEvent": {"metadata": meta}},
        "failed": {"resOpFailedEvent": {"metadata": meta, "status": 1, "steps": 1}},
        "diag": {"diagnosticEvent": {"message": extra.get("message", ""), "color": "never",
                                     "severity": extra.get("severity", "error"), "urn": urn}},
        "summary": {"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 3,
                                     "resourceChanges": extra.get("changes", {}),
                                     "PolicyPacks": {}}},
    }  # fmt: skip
    return EngineEvent.from_json({"sequence": 1, "timestamp": 0, **bodies[kind]})


def _plain() -> tuple[Progress, io.StringIO]:
    buf = io.StringIO()
    return Progress(Console(file=buf, width=200, color_system=None), live=False), buf


def test_plain_mode_prints_one_line_per_event():
    progress, buf = _plain()
    with progress:
        progress(_event("pre"))
        progress(_event("done"))
        progress(_event("summary", changes={"create": 1}))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert "create" in lines[0] and DEPLOYMENT in lines[0] and "deployment" in lines[0]
    assert "done" in lines[1]
    assert progress.counts() == {"create": 1}


def test_unchanged_resources_stay_quiet_and_failures_are_loud():
    progress, buf = _plain()
    other = URN.replace("Deployment::deployment", "Service::service").replace(
        "apps/v1:Deployment", "core/v1:Service"
    )
    progress(_event("pre", op="same", urn=other))
    progress(_event("done", op="same", urn=other))
    progress(_event("pre"))
    progress(_event("diag", message="ImagePullBackOff", severity="error"))
    progress(_event("failed"))
    out = buf.getvalue()
    assert "service" not in out
    assert "ImagePullBackOff" in out and "failed" in out
    assert progress.errors == ["ImagePullBackOff"]
    assert progress.counts() == {"same": 1, "create": 1}


def test_replacement_is_destructive_and_shown_once():
    progress, _ = _plain()
    progress(_event("pre", op="create-replacement"))
    progress(_event("pre", op="delete-replaced"))
    assert progress.destructive == [f"replace {DEPLOYMENT} deployment"]


def test_live_table_on_a_terminal():
    buf = io.StringIO()
    console = Console(file=buf, width=120, force_terminal=True, color_system=None)
    progress = Progress(console, live=True, title="up stack")
    with progress:
        progress(_event("pre"))
        progress(_event("done"))
    out = buf.getvalue()
    assert "operation" in out and DEPLOYMENT in out and "done" in out


def test_ci_forces_plain_lines(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    assert interactive_terminal(Tty())
    monkeypatch.setenv("CI", "true")
    assert not interactive_terminal(Tty())
    assert not interactive_terminal(io.StringIO())


def test_engine_colour_directives_and_tracebacks_are_not_shown():
    # The engine sends diagnostics with color "raw": Pulumi's colour directives stay in the
    # message whatever --color says. A failing inline program adds its Python traceback.
    progress, buf = _plain()
    progress(_event("diag", message="<{%reset%}>ImagePullBackOff: pull denied<{%reset%}>\n"))
    crash = (
        "python inline source runtime error: boom\nTraceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\nValueError: boom\n'
    )
    progress(_event("diag", message=crash))
    out = buf.getvalue()
    assert "<{%" not in out and "Traceback" not in out
    assert "ImagePullBackOff: pull denied" in out and "runtime error: boom" in out
    assert progress.errors == [
        "ImagePullBackOff: pull denied",
        "python inline source runtime error: boom",
    ]


def test_paused_takes_the_live_table_off_screen_and_back():
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    progress = Progress(console, live=True)
    with progress:
        assert progress.live_active
        with progress.paused():
            assert not progress.live_active
        assert progress.live_active
    assert not progress.live_active
    plain, _ = _plain()
    with plain, plain.paused():  # nothing to pause in CI mode
        assert not plain.live_active
