"""
What `mdeploy up` must know about promotions: they change the endpoint outside Pulumi.

`promote` deploys a version beside the one the Pulumi program declares, moves the traffic
and removes the old version, all through the platform's API; the Pulumi state still
describes the spec's version. The next `up` applies what the program declares (the spec's
image and revision): it would put back, or fail to update, what the promotion replaced. So
`up` asks here first:

- a promotion holds the stack's lock, or one was interrupted mid-way (phase "shifting"):
  refused (exit 4), finish it with `promote` or abandon it with `rollback` first;
- the last promotion (or rollback) left a version whose image or revision differs from the
  spec's: refused without `--yes` (exit 4), naming both, so the user either updates the
  spec's model.version/revision/image to the promoted one or confirms replacing it;
- the spec already declares the serving version: `up` goes on with a warning, since the
  Pulumi state still describes what the last `up` created (the promotion replaced it);
- no promotion recorded: nothing to say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mdeploy.errors import PolicyError
from mdeploy.ops.state import StateStore

__all__ = ["check_before_up"]


def check_before_up(
    store: StateStore,
    stack: str,
    image: str | None,
    model_revision: str | None,
    *,
    yes: bool = False,
    warn: Callable[[str], None] = lambda _: None,
) -> None:
    """Raise PolicyError (exit 4) when `up` would silently undo or race a promotion."""
    _refuse_while_locked(store, stack)
    if not store.path(stack).exists():
        return
    state = store.load(stack)
    promo = state.get("promotion") or {}
    if promo.get("phase") == "shifting":
        raise PolicyError(
            f"stack {stack}: the promotion to {promo['to']['name']} stopped after step "
            f"{promo.get('completed', 0)} of {len(promo.get('percents') or [])}; `up` would "
            "apply the spec's version over a half-shifted endpoint",
            hint="finish it with `mdeploy promote` (it resumes) or abandon it with "
            f"`mdeploy rollback`; the state is {store.path(stack)}",
        )
    current = state.get("current") or {}
    if not current:
        return
    if _same_image(current.get("image"), image) and current.get("model_revision") == model_revision:
        warn(
            f"stack {stack}: `mdeploy {_last_operation(state)}` set version "
            f"{current.get('name')} outside Pulumi; the spec declares it, but Pulumi's state "
            "still describes the resources the last `up` created, so this update may replace "
            "or recreate them (`mdeploy preview` shows what changes)"
        )
        return
    what = (
        f"stack {stack} serves version {current.get('name')} (image {current.get('image')}, "
        f"revision {current.get('model_revision')}), set by `mdeploy "
        f"{_last_operation(state)}` outside Pulumi; the spec declares image {image}, revision "
        f"{model_revision}: `up` applies the spec's, which replaces the serving version (or "
        "fails on resources the promotion removed)"
    )
    if not yes:
        raise PolicyError(
            what,
            hint="set the spec's model.revision (and image) to the serving version's, or pass "
            "--yes to deploy the spec's version over it",
        )
    warn(what)


def _refuse_while_locked(store: StateStore, stack: str) -> None:
    """The promotion lock, taken and released at once: a live holder refuses `up`."""
    lock = store.lock(stack, "up")
    if not lock.path.exists():
        return
    try:
        lock.acquire()
    except PolicyError as exc:
        raise PolicyError(
            f"{exc.message}; `up` would change the endpoint under it",
            hint=exc.hint,
        ) from None
    lock.release()


def _same_image(serving: str | None, declared: str | None) -> bool:
    """
    By digest when both are pinned: `up` copies the spec's image into the target's registry
    (another repository, the same digest), and the platform reports the copy.
    """
    if serving and declared and "@sha256:" in serving and "@sha256:" in declared:
        return serving.rsplit("@", 1)[1] == declared.rsplit("@", 1)[1]
    return serving == declared


def _last_operation(state: dict[str, Any]) -> str:
    history = state.get("history") or []
    return str(history[-1].get("operation") or "promote") if history else "promote"
