"""
A stand-in for the Pulumi CLI, just enough for the Automation API to drive it.

Nothing else can stand in here: no Pulumi CLI binary can be installed on the test machines.
It answers the commands `pulumi.automation` issues (version, stack select/init, config
set-all, plugin install, up/preview/destroy with --event-log, stack output/history, cancel),
keeps per-stack state as JSON under $FAKE_PULUMI_STATE, and logs every call (argv plus whether
a passphrase reached it, never its value) to $FAKE_PULUMI_STATE/calls.jsonl. It does not run
the program: `up` writes a scripted engine event stream (one JSON event per line, the format
the Automation API reads) and scripted outputs.

Knobs (env):
- FAKE_PULUMI_VERSION: default 3.190.0, new enough for inline destroy (>= 3.181) and old
  enough for the file-based event log (<= 3.205);
- FAKE_PULUMI_EVENTS: a JSON file, the list of steps {op, type, name, fail?} to report;
- FAKE_PULUMI_OUTPUTS: a JSON file, {name: value | {"secret": value}} set by `up`;
- FAKE_PULUMI_FAIL: a command word (e.g. plugin) whose calls exit 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

STATE = Path(os.environ.get("FAKE_PULUMI_STATE", "/tmp/fake-pulumi"))
PROJECT = "mdeploy"


def main(argv: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    _log(argv)
    words = [a for a in argv if not a.startswith("-")]
    if os.environ.get("FAKE_PULUMI_FAIL") and os.environ["FAKE_PULUMI_FAIL"] in words[:2]:
        print(f"error: {words[0]} failed (scripted)", file=sys.stderr)
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
    if head == "stack":
        return _stack_cmd(words[1:], argv, stack)
    if head == "config":
        return _config(argv, stack)
    if head in {"up", "preview", "destroy"}:
        return _operation(head, argv, stack)
    print(f"fake pulumi: unsupported command {argv}", file=sys.stderr)
    return 2


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


def _operation(kind: str, argv: list[str], stack: str | None) -> int:
    state = _load(stack)
    log_path = _flag(argv, "--event-log")
    targets = _flags(argv, "--target")
    steps = _scripted_steps(kind)
    if targets:
        steps = [s for s in steps if any(t.endswith("::" + s["name"]) for t in targets)]
    events = _events(steps, stack, kind)
    if log_path:
        with open(log_path, "a", encoding="utf-8") as f:
            for event in events:
                f.write(json.dumps(event) + "\n")
                f.flush()
    failed = [s for s in steps if s.get("fail")]
    if kind != "preview":
        _record(state, kind, steps, failed)
        _save(stack, state)
    print(f"{kind}: {len(steps)} resource operations")
    if failed:
        print(f"error: update failed: {failed[0]['name']} could not be created", file=sys.stderr)
        return 255
    return 0


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


def _events(steps: list[dict], stack: str | None, kind: str) -> list[dict]:
    seq, events = 0, []

    def add(body: dict) -> None:
        nonlocal seq
        seq += 1
        events.append({"sequence": seq, "timestamp": int(time.time()), **body})

    add({"preludeEvent": {"config": {}}})
    for step in steps:
        meta = {
            "op": step["op"],
            "urn": f"urn:pulumi:{stack}::{PROJECT}::mdeploy:kubernetes:Endpoint${step['type']}"
            f"::{step['name']}",
            "type": step["type"],
            "provider": "",
        }
        add({"resourcePreEvent": {"metadata": meta}})
        if step.get("fail"):
            add({"diagnosticEvent": {"message": "could not be created", "severity": "error",
                                     "urn": meta["urn"], "color": "never"}})  # fmt: skip
            add({"resOpFailedEvent": {"metadata": meta, "status": 1, "steps": 1}})
        else:
            add({"resOutputsEvent": {"metadata": meta}})
    changes: dict[str, int] = {}
    for step in steps:
        changes[step["op"]] = changes.get(step["op"], 0) + 1
    add({"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 1,
                          "resourceChanges": changes, "PolicyPacks": {}}})  # fmt: skip
    add({"cancelEvent": {}})
    del kind  # Unused: the same stream shape for up, preview and destroy.
    return events


def _record(state: dict, kind: str, steps: list[dict], failed: list[dict]) -> None:
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
    changes: dict[str, int] = {}
    for step in steps:
        changes[step["op"]] = changes.get(step["op"], 0) + 1
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
