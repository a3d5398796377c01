"""
`mdeploy ls`: every stack mdeploy owns, read from disk only (no cloud call, no Pulumi CLI).

Two sources under MDEPLOY_HOME, merged by stack name:
- the Pulumi file backend mdeploy uses by default (`state/`): each stack's checkpoint,
  `.pulumi/stacks/<project>/<stack>.json` (or `.json.gz`; older CLIs put it directly under
  `stacks/`), whose root `pulumi:pulumi:Stack` resource holds the stack outputs; secret
  outputs stay encrypted there and are shown as "[secret]";
- the promotion state files (`promotions/`), which record the versions, the last good one,
  the promotion's phase and the plan's hourly price.
A stack with resources but no recorded price shows `hourly_usd: null`, never a guess.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from mdeploy.ops.state import StateStore
from mdeploy.targets import TARGET_NAMES

__all__ = ["list_stacks"]

_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value


def list_stacks(home: Path) -> list[dict[str, Any]]:
    """One row per stack: target, region, versions, state, promotion, hourly_usd, resources."""
    rows: dict[str, dict[str, Any]] = {}
    for stack, checkpoint in _checkpoints(home / "state"):
        rows[stack] = _from_checkpoint(stack, checkpoint)
    store = StateStore(home / "promotions")
    for stack in store.stacks():
        try:
            state = store.load(stack)
        except Exception as exc:  # a broken file is listed, not fatal to the listing
            rows.setdefault(stack, _row(stack))["state"] = f"unreadable state: {exc}"
            continue
        _merge_promotion(rows.setdefault(stack, _row(stack)), state)
    return [rows[k] for k in sorted(rows)]


def _row(stack: str) -> dict[str, Any]:
    target = stack.rsplit("-", 1)[-1]
    return {
        "stack": stack,
        "target": target if target in TARGET_NAMES else None,
        "region": None,
        "versions": [],
        "state": "unknown",
        "hourly_usd": None,
        "resources": None,
        "endpoint": None,
        "promotion": None,
    }


def _checkpoints(backend: Path) -> list[tuple[str, dict[str, Any]]]:
    root = backend / ".pulumi" / "stacks"
    if not root.is_dir():
        return []
    found = []
    for path in sorted([*root.rglob("*.json"), *root.rglob("*.json.gz")]):
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            data = json.loads(raw)
        except (OSError, ValueError):
            continue
        stack = path.name.removesuffix(".gz").removesuffix(".json")
        if isinstance(data, dict):
            found.append((stack, data))
    return found


def _from_checkpoint(stack: str, data: dict[str, Any]) -> dict[str, Any]:
    row = _row(stack)
    latest = (data.get("checkpoint") or {}).get("latest") or {}
    resources = latest.get("resources") or []
    row["resources"] = max(0, len(resources) - 1) if resources else 0
    root = next((r for r in resources if r.get("type") == "pulumi:pulumi:Stack"), {})
    outputs = {k: _plain(v) for k, v in (root.get("outputs") or {}).items()}
    row["endpoint"] = outputs.get("endpoint_name") or outputs.get("endpoint_url")
    row["state"] = "deployed" if row["resources"] else "empty (destroyed or never deployed)"
    return row


def _plain(value: Any) -> Any:
    if isinstance(value, dict) and _SECRET_SIG in value:
        return "[secret]"
    return value


def _merge_promotion(row: dict[str, Any], state: dict[str, Any]) -> None:
    row["target"] = state.get("target") or row["target"]
    row["region"] = state.get("region") or row["region"]
    row["hourly_usd"] = state.get("hourly_usd")
    current, last_good = state.get("current"), state.get("last_good")
    promo = state.get("promotion") or {}
    versions = []
    if current:
        versions.append({"name": current["name"], "role": "current"})
    if promo.get("phase") == "shifting":
        versions.append({"name": promo["to"]["name"], "role": "promoting"})
        done, total = promo.get("completed", 0), len(promo.get("percents") or [])
        row["promotion"] = f"interrupted after step {done} of {total}"
    elif promo:
        row["promotion"] = promo.get("phase")
    if last_good and last_good["name"] != (current or {}).get("name"):
        versions.append({"name": last_good["name"], "role": "last good (removed)"})
    row["versions"] = versions
