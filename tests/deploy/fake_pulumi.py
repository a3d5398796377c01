"""
A stand-in for the Pulumi CLI, just enough for the Automation API to drive it.

Nothing else can stand in here: no Pulumi CLI binary can be installed on the test machines.
It answers the commands `pulumi.automation` issues (version, stack select/init, config
set-all, plugin install, up/preview/destroy with --event-log, stack output/history, cancel),
keeps per-stack state as JSON under $FAKE_PULUMI_STATE, and logs every call (argv plus whether
a passphrase reached it, never its value) to $FAKE_PULUMI_STATE/calls.jsonl. It does not run
the program: `up` writes a scripted engine event stream (one JSON event per line, the format
the Automation API reads) and scripted outputs.

Where the real CLI's behaviour is documented, the fake copies it:
- events go to the file named by --event-log, or, for CLIs newer than 3.205, stream over gRPC
  to the `tcp://` address the SDK passes (pulumirpc.Events/StreamEvents, one JSON per event);
- the summary event counts logical steps only: a replacement is one "replace" (the
  create-replacement and delete-replaced steps around it are not counted);
- diagnostics carry the engine's raw colour directives (`<{%reset%}>`, `"color": "raw"`);
- a failed resource ends the update with its error on stdout (the "Diagnostics:" block) and
  in the events, and nothing on stderr: the CLI "bails", its error was already shown;
- commands that open the stack's secrets read the passphrase: PULUMI_CONFIG_PASSPHRASE, or
  the file PULUMI_CONFIG_PASSPHRASE_FILE names, read relative to the CLI's own cwd;
- SIGINT during `up` cancels gracefully (the operations in flight finish, then exit 255);
  a second SIGINT stops at once.

Knobs (env):
- FAKE_PULUMI_VERSION: default 3.190.0, new enough for inline destroy (>= 3.181) and old
  enough for the file-based event log (<= 3.205); newer versions use the gRPC event stream;
- FAKE_PULUMI_EVENTS: a JSON file, the list of steps {op, type, name, fail?} to report;
- FAKE_PULUMI_OUTPUTS: a JSON file, {name: value | {"secret": value}} set by `up`;
- FAKE_PULUMI_FAIL: a command word (e.g. plugin) whose calls exit 1;
- FAKE_PULUMI_SLOW_UP: seconds a full (untargeted) `up` takes, for Ctrl-C tests; it writes
  `up-running` under the state folder when it starts, `up-finished` when it ends.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

STATE = Path(os.environ.get("FAKE_PULUMI_STATE", "/tmp/fake-pulumi"))
PROJECT = "mdeploy"
# Steps the engine does not count in a summary (deploy.Step.Logical() is false for them).
NOT_LOGICAL = {"create-replacement", "delete-replaced"}
RESET = "<{%reset%}>"


def main(argv: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    _log(argv)
    words = [a for a in argv if not a.startswith("-")]
    failing = os.environ.get("FAKE_PULUMI_FAIL")
    if failing and failing in words[:2]:
        print(f"error: {failing} failed (scripted)", file=sys.stderr)
        return 1
    if not words:
        return 2
    head = words[0]
    if head == "version":
        print("v" + os.environ.get("FAKE_PULUMI_VERSION", "3.190.0"))
        return 0
    if head == "whoami":
        print("fake-user")
        return 0
    if head == "plugin":
        return 0
    if head == "cancel":
        return 0
    stack = _flag(argv, "--stack")
    if _needs_secrets(words) and not _passphrase():
        return 255
    if head == "stack":
        return _stack_cmd(words[1:], argv, stack)
    if head == "config":
        return _config(argv, stack)
    if head in {"up", "preview", "destroy"}:
        return _operation(head, argv, stack)
    print(f"fake pulumi: unsupported command {argv}", file=sys.stderr)
    return 2


def _needs_secrets(words: list[str]) -> bool:
    """Commands that open the stack's secrets manager (passphrase provider)."""
    if words[0] in {"config", "up", "preview", "destroy"}:
        return True
    return words[0] == "stack" and words[1:2] in (["init"], ["output"])


def _passphrase() -> bool:
    """Read the passphrase as the CLI does; False (with the CLI's error) when there is none."""
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None:
        return True
    path = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if path:
        try:
            Path(path).read_text()  # relative to this process's cwd, no ~ expansion
            return True
        except OSError as exc:
            print(f"error: unable to read PULUMI_CONFIG_PASSPHRASE_FILE: {exc}", file=sys.stderr)
            return False
    print(
        "error: passphrase must be set with PULUMI_CONFIG_PASSPHRASE or "
        "PULUMI_CONFIG_PASSPHRASE_FILE environment variables",
        file=sys.stderr,
    )
    return False


def _stack_cmd(words: list[str], argv: list[str], stack: str | None) -> int:
    sub = words[0] if words else ""
    if sub == "select":
        if not _stack_file(stack).exists():
            print(f"error: no stack named '{stack}' found", file=sys.stderr)
            return 255
        return 0
    if sub == "init":
        name = words[1]
        if _stack_file(name).exists():
            print(f"error: stack '{name}' already exists", file=sys.stderr)
            return 255
        _save(name, {"config": {}, "outputs": {}, "history": [], "resources": 0})
        return 0
    if sub == "output":
        outputs = _load(stack)["outputs"]
        shown = "--show-secrets" in argv
        print(json.dumps({k: v["value"] if shown or not v["secret"] else "[secret]"
                          for k, v in outputs.items()}))  # fmt: skip
        return 0
    if sub == "history":
        print(json.dumps(list(reversed(_load(stack)["history"]))[:1]))
        return 0
    if sub == "ls":
        print(json.dumps([{"name": p.stem} for p in STATE.glob("*.stack.json")]))
        return 0
    print(f"fake pulumi: unsupported stack command {words}", file=sys.stderr)
    return 2


def _config(argv: list[str], stack: str | None) -> int:
    state = _load(stack)
    if "set-all" not in argv:  # `config --json`: the whole map
        print(json.dumps({k: {"value": v, "secret": False} for k, v in state["config"].items()}))
        return 0
    values = [a for a in argv[argv.index("set-all") + 1 :] if "=" in a and not a.startswith("--")]
    for pair in values:
        key, _, value = pair.partition("=")
        state["config"][key] = value
    _save(stack, state)
    return 0


class _EventSink:
    """Where engine events go: the --event-log file, or the SDK's gRPC event server."""

    def __init__(self, target: str | None) -> None:
        self.seq = 0
        self.path: str | None = None
        self.queue: queue.Queue | None = None
        self.thread: threading.Thread | None = None
        if not target:
            return
        if not target.startswith("tcp://"):
            self.path = target
            return
        import grpc
        from pulumi.runtime.proto import events_pb2, events_pb2_grpc

        channel = grpc.insecure_channel(target.removeprefix("tcp://"))
        stub = events_pb2_grpc.EventsStub(channel)
        self.queue = queue.Queue()
        requests = (events_pb2.EventRequest(event=e) for e in iter(self.queue.get, None))
        self.thread = threading.Thread(target=stub.StreamEvents, args=(requests,), daemon=True)
        self.thread.start()

    def send(self, body: dict) -> None:
        self.seq += 1
        line = json.dumps({"sequence": self.seq, "timestamp": int(time.time()), **body})
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        elif self.queue is not None:
            self.queue.put(line)

    def close(self) -> None:
        if self.queue is not None and self.thread is not None:
            self.queue.put(None)
            self.thread.join(10)


def _operation(kind: str, argv: list[str], stack: str | None) -> int:
    state = _load(stack)
    targets = _flags(argv, "--target")
    steps = _scripted_steps(kind)
    if targets:
        steps = [s for s in steps if any(t.endswith("::" + s["name"]) for t in targets)]
    sink = _EventSink(_flag(argv, "--event-log"))
    try:
        cancelled = _run_steps(sink, steps, stack, kind, slow=kind == "up" and not targets)
    finally:
        sink.close()
    failed = [s for s in steps if s.get("fail")]
    if kind != "preview":
        _record(state, kind, steps, failed or cancelled)
        _save(stack, state)
    print(f"{kind}: {len(steps)} resource operations")
    if failed:
        # The real CLI prints the diagnostics on stdout and bails: nothing on stderr.
        print("Diagnostics:")
        print(f"  pulumi:pulumi:Stack ({PROJECT}-{stack}):")
        print("    error: update failed")
        for step in failed:
            print(f"  {step['type']} ({step['name']}):")
            print(f"    error: {_fail_message(step)}")
        return 255
    if cancelled:
        print("error: update canceled", file=sys.stderr)
        (STATE / "up-finished").write_text("canceled")
        return 255
    if kind == "up" and not targets and os.environ.get("FAKE_PULUMI_SLOW_UP"):
        (STATE / "up-finished").write_text("ok")
    return 0


def _run_steps(sink: _EventSink, steps: list[dict], stack: str | None, kind: str, *,
               slow: bool) -> bool:  # fmt: skip
    """Emit the event stream; True when a SIGINT cancelled the run (slow `up` only)."""
    stack_urn = f"urn:pulumi:{stack}::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-{stack}"
    sink.send({"preludeEvent": {"config": {}}})
    interrupts: list[float] = []
    seconds = float(os.environ.get("FAKE_PULUMI_SLOW_UP") or 0) if slow else 0.0
    if seconds:

        def on_sigint(signum: int, frame: object) -> None:
            interrupts.append(time.monotonic())
            if len(interrupts) > 1:
                os._exit(255)  # "terminating immediately"
            print("^C received; cancelling. If you would like to terminate immediately, "
                  "press ^C again.", flush=True)  # fmt: skip

        signal.signal(signal.SIGINT, on_sigint)
        (STATE / "up-running").write_text(str(os.getpid()))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not interrupts:
            time.sleep(0.05)
        if interrupts:
            time.sleep(1.5)  # the operations in flight finish, the state is written
            print("Resources:\n    0 changes", flush=True)  # stdout still read by the caller
            sink.send({"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 1,
                                        "resourceChanges": {}, "PolicyPacks": {}}})  # fmt: skip
            sink.send({"cancelEvent": {}})
            return True
    for step in steps:
        meta = {
            "op": step["op"],
            "urn": f"urn:pulumi:{stack}::{PROJECT}::mdeploy:kubernetes:Endpoint${step['type']}"
            f"::{step['name']}",
            "type": step["type"],
            "provider": "",
        }
        sink.send({"resourcePreEvent": {"metadata": meta, "planning": kind == "preview"}})
        if step.get("fail"):
            sink.send({"diagnosticEvent": {"message": f"{RESET}{_fail_message(step)}{RESET}\n",
                                           "severity": "error", "urn": meta["urn"],
                                           "prefix": "<{%fg 1%}>error: <{%reset%}>",
                                           "color": "raw"}})  # fmt: skip
            sink.send({"resOpFailedEvent": {"metadata": meta, "status": 1, "steps": 1}})
        else:
            sink.send({"resOutputsEvent": {"metadata": meta, "planning": kind == "preview"}})
    if any(s.get("fail") for s in steps):
        sink.send({"diagnosticEvent": {"message": f"{RESET}update failed{RESET}\n",
                                       "severity": "error", "urn": stack_urn,
                                       "prefix": "<{%fg 1%}>error: <{%reset%}>",
                                       "color": "raw"}})  # fmt: skip
    changes = _changes(steps)
    sink.send({"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 1,
                                "resourceChanges": changes, "PolicyPacks": {}}})  # fmt: skip
    sink.send({"cancelEvent": {}})
    return False


def _scripted_steps(kind: str) -> list[dict]:
    path = os.environ.get("FAKE_PULUMI_EVENTS")
    if path:
        return json.loads(Path(path).read_text())
    op = "delete" if kind == "destroy" else "create"
    return [
        {"op": op, "type": "kubernetes:core/v1:Namespace", "name": "namespace"},
        {"op": op, "type": "kubernetes:apps/v1:Deployment", "name": "deployment"},
        {"op": op, "type": "kubernetes:core/v1:Service", "name": "service"},
    ]


def _fail_message(step: dict) -> str:
    return step.get("message") or f"{step['name']} could not be created"


def _changes(steps: list[dict]) -> dict[str, int]:
    """The summary's resourceChanges: logical steps only, as the engine counts them."""
    changes: dict[str, int] = {}
    for step in steps:
        if step["op"] not in NOT_LOGICAL:
            changes[step["op"]] = changes.get(step["op"], 0) + 1
    return changes


def _record(state: dict, kind: str, steps: list[dict], failed: object) -> None:
    if kind == "up" and not failed:
        path = os.environ.get("FAKE_PULUMI_OUTPUTS")
        raw = json.loads(Path(path).read_text()) if path else {}
        state["outputs"] = {
            k: {"value": v["secret"], "secret": True}
            if isinstance(v, dict) and "secret" in v
            else {"value": v, "secret": False}
            for k, v in raw.items()
        }
    if kind == "destroy":
        state["outputs"] = {}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    changes = _changes(steps)
    state["history"].append({
        "kind": "update" if kind == "up" else kind, "startTime": now, "endTime": now,
        "message": "", "environment": {}, "config": {},
        "result": "failed" if failed else "succeeded", "version": len(state["history"]) + 1,
        "resourceChanges": changes,
    })  # fmt: skip


def _log(argv: list[str]) -> None:
    entry = {
        "argv": argv,
        "passphrase": "PULUMI_CONFIG_PASSPHRASE" in os.environ
        or "PULUMI_CONFIG_PASSPHRASE_FILE" in os.environ,
        "backend": os.environ.get("PULUMI_BACKEND_URL"),
        "cwd": os.getcwd(),
    }
    with (STATE / "calls.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _flags(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == name and i + 1 < len(argv)]


def _stack_file(name: str | None) -> Path:
    return STATE / f"{name}.stack.json"


def _load(name: str | None) -> dict:
    return json.loads(_stack_file(name).read_text())


def _save(name: str | None, state: dict) -> None:
    _stack_file(name).write_text(json.dumps(state))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
