"""
What must be true before a stack operation starts, each failure with how to fix it (exit 3).

Checks read the environment and local files only: the Pulumi CLI on PATH, the target's
credentials, the kube context, the state passphrase, and the values behind `env:`/`file:`
secret references. Nothing here prints or returns a secret value; the passphrase and secret
values go straight into the Pulumi workspace environment.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mdeploy.errors import PrerequisiteError

if TYPE_CHECKING:
    from mdeploy.targets.base import EndpointArgs, Target

__all__ = [
    "PULUMI_INSTALL_HINT",
    "backend_url",
    "check_credentials",
    "check_local_secrets",
    "check_placement",
    "find_pulumi",
    "mdeploy_home",
    "passphrase_env",
]

PULUMI_INSTALL_HINT = (
    "install the Pulumi CLI: `curl -fsSL https://get.pulumi.com | sh` "
    "(or see https://www.pulumi.com/docs/install/), then open a new shell so `pulumi` is on PATH"
)
PassphrasePrompt = Callable[[], str]


def mdeploy_home() -> Path:
    """mdeploy's own folder: $MDEPLOY_HOME, else ~/.mdeploy."""
    raw = os.environ.get("MDEPLOY_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".mdeploy"


def backend_url() -> str:
    """Where stack state lives: $PULUMI_BACKEND_URL, else a local file backend under home."""
    configured = os.environ.get("PULUMI_BACKEND_URL")
    if configured:
        return configured
    state = mdeploy_home() / "state"
    state.mkdir(parents=True, exist_ok=True)
    return state.resolve().as_uri()


def find_pulumi() -> str:
    """Path of the Pulumi CLI: PATH, then $PULUMI_HOME/bin, then ~/.pulumi/bin."""
    found = shutil.which("pulumi")
    if found:
        return found
    homes = [os.environ.get("PULUMI_HOME"), str(Path.home() / ".pulumi")]
    for home in filter(None, homes):
        candidate = Path(home) / "bin" / "pulumi"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise PrerequisiteError(
        "the Pulumi CLI is not installed; up, preview, destroy and status drive it",
        hint=PULUMI_INSTALL_HINT,
    )


def check_credentials(target: Target, args: EndpointArgs) -> str:
    """The target's offline credential check for this deployment (e.g. its kube context)."""
    ok, reason = target.check_credentials_for(args)
    if not ok:
        raise PrerequisiteError(
            f"{target.display_name} credentials: {reason}", hint=target.credentials_hint
        )
    return reason


def check_placement(target: Target, args: EndpointArgs) -> None:
    """
    At `up`: the place the plan chose must exist where the target deploys.

    Managed clouds place by API region and need no check; a target that deploys into a
    cluster it does not choose (Kubernetes: some node of the kube context must carry the
    region's label) provides `placement_problem(args) -> (message, hint) | None`.
    """
    placement_problem = getattr(target, "placement_problem", None)
    problem = placement_problem(args) if placement_problem else None
    if problem:
        message, hint = problem
        raise PrerequisiteError(f"{target.display_name} placement: {message}", hint=hint)
    # A cluster add-on the endpoint's shape needs (Kubernetes: the LeaderWorkerSet API for
    # a replica spanning nodes): `cluster_problem(args) -> (message, hint) | None`.
    cluster_problem = getattr(target, "cluster_problem", None)
    problem = cluster_problem(args) if cluster_problem else None
    if problem:
        message, hint = problem
        raise PrerequisiteError(f"{target.display_name} cluster: {message}", hint=hint)


def passphrase_env(prompt: PassphrasePrompt | None) -> dict[str, str]:
    """
    The env that lets Pulumi's passphrase secrets provider open the stack state.

    PULUMI_CONFIG_PASSPHRASE passes through untouched. PULUMI_CONFIG_PASSPHRASE_FILE is handed
    on as an absolute path: the Pulumi CLI runs in the stack's workspace folder under
    MDEPLOY_HOME and reads the path as given, so a relative (or `~`) path checked here would
    name another file, or none, there. Otherwise `prompt` asks (interactive only), else exit 3
    saying what to set.
    """
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None:
        return {}
    path = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if path:
        resolved = Path(path).expanduser().resolve()
        if not resolved.is_file():
            raise PrerequisiteError(
                f"PULUMI_CONFIG_PASSPHRASE_FILE={path} does not exist",
                hint="point it at a file holding the stack passphrase",
            )
        return {"PULUMI_CONFIG_PASSPHRASE_FILE": str(resolved)}
    if prompt is None:
        raise PrerequisiteError(
            "no passphrase for the stack's encrypted state",
            hint="set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) in the "
            "environment; CI: store it as a pipeline secret",
        )
    return {"PULUMI_CONFIG_PASSPHRASE": prompt()}


def check_local_secrets(args: EndpointArgs) -> None:
    """
    Every env:/file: secret reference must resolve on this machine before `up` starts.

    One rule for every target (the components differ: SageMaker and Vertex would fail,
    Azure warn, Kubernetes create an empty Secret and the gated download fail much later).
    The message names the variable or file, never a value.
    """
    missing = []
    for var, ref in sorted(args.secrets.items()):
        kind, _, where = ref.partition(":")
        if kind == "env" and where not in os.environ:
            missing.append(f"{var} (env:{where} is not set)")
        elif kind == "env" and not os.environ[where].strip():
            missing.append(f"{var} (env:{where} is empty)")
        elif kind == "file" and not Path(where).expanduser().is_file():
            missing.append(f"{var} (file:{where} does not exist)")
        elif kind == "file" and not os.access(Path(where).expanduser(), os.R_OK):
            missing.append(f"{var} (file:{where} is not readable)")
    if missing:
        raise PrerequisiteError(
            "secret references that cannot be read here: " + ", ".join(missing),
            hint="export the variables or create the files named in serving.secrets; "
            "values are read at up time and stored only as encrypted Pulumi secrets",
        )
