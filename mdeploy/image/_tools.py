"""
Running the container tools (skopeo, buildah, podman, docker) safely.

Every call is a list argv (never a shell), has a timeout, and turns a failure into a
CloudError holding the tool's stderr, so a person sees why without a traceback. Secrets never
reach an argv: credentials travel in a 0600 auth file (see `mdeploy.image.auth`), and any
secret value the caller names is masked in error text as a second line of defence.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence

from mdeploy.errors import CloudError, PrerequisiteError

__all__ = ["INSTALL_HINTS", "redact", "require_tool", "run_tool"]

INSTALL_HINTS = {
    "skopeo": "install skopeo: `apt-get install skopeo` (Debian/Ubuntu), `dnf install skopeo` "
    "(Fedora/RHEL) or `brew install skopeo` (macOS)",
    "buildah": "install buildah: `apt-get install buildah` (Debian/Ubuntu) or "
    "`dnf install buildah` (Fedora/RHEL); podman or docker also work (--tool)",
    "podman": "install podman: `apt-get install podman` or `dnf install podman`",
    "docker": "install Docker Engine (https://docs.docker.com/engine/install/) and start it",
}
_STDERR_TAIL = 2000


def require_tool(name: str) -> str:
    """Absolute path of `name` on PATH, or PrerequisiteError (exit 3) saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise PrerequisiteError(
            f"{name} was not found on PATH", hint=INSTALL_HINTS.get(name, f"install {name}")
        )
    return path


def run_tool(
    argv: Sequence[str],
    *,
    timeout: float,
    secrets: Iterable[str] = (),
    what: str | None = None,
) -> bytes:
    """
    Run `argv` and return its stdout as bytes (digests are computed over exact bytes).

    Raises CloudError on a non-zero exit or a timeout, with stderr (secrets masked).
    """
    hidden = [s for s in secrets if s]
    label = what or " ".join(argv[:2])
    try:
        proc = subprocess.run(  # list argv, never a shell
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise PrerequisiteError(
            f"{argv[0]} was not found", hint=INSTALL_HINTS.get(_base(argv[0]), "")
        ) from None
    except subprocess.TimeoutExpired:
        raise CloudError(
            f"{label} timed out after {timeout:.0f} s",
            hint="the registry or network is slow; retry, or raise the timeout",
        ) from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        raise CloudError(redact(f"{label} failed (exit {proc.returncode}): {err}", hidden))
    return proc.stdout


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask each secret value in `text`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[secret]")
    return text


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]
