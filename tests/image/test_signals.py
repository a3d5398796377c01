"""
`image replicate` cancelled mid-copy: SIGTERM (how CI cancels a job) and SIGINT sent to the
mdeploy process alone. Real processes: mdeploy in a subprocess, a stand-in `skopeo` on PATH
whose copy blocks, so the signal lands while a child runs and the auth file exists.

The mdeploy child resets SIGINT to Python's default handler (KeyboardInterrupt) first: a
test run started as a background job has SIGINT ignored, and children inherit that.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
               "digest": "sha256:" + "0" * 64},
    "layers": [],
}  # fmt: skip

FAKE_SKOPEO = textwrap.dedent(
    """\
    import json, os, sys, time
    log = os.environ["FAKE_SKOPEO_LOG"]
    argv = sys.argv[1:]
    with open(log, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "argv": argv}) + "\\n")
    if argv[0] == "inspect":
        sys.stdout.write(os.environ["FAKE_SKOPEO_MANIFEST"])
        sys.exit(0)
    if argv[0] == "copy":
        time.sleep(120)  # a 10 GB layer on a slow link
    sys.exit(0)
    """
)


def _calls(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by a parent that is gone) counts as stopped
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


@pytest.fixture
def replicate_run(tmp_path: Path):
    """Start `mdeploy image replicate` with the fake skopeo; wait until its copy blocks."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "fake_skopeo.py"
    script.write_text(FAKE_SKOPEO)
    wrapper = bin_dir / "skopeo"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    wrapper.chmod(0o755)
    log = tmp_path / "skopeo.jsonl"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "FAKE_SKOPEO_LOG": str(log),
        "FAKE_SKOPEO_MANIFEST": json.dumps(MANIFEST),
        "MDEPLOY_REGISTRY_USER": "ci",
        "MDEPLOY_REGISTRY_PASSWORD": "pw-not-a-real-one",
        "MDEPLOY_TERM_GRACE_S": "5",
    }
    env.pop("MDEPLOY_REGISTRY_HOST", None)
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from mdeploy.cli.app import main; main()"
    )
    to = ["--to", "127.0.0.1:9/dst-a:v1", "--to", "127.0.0.1:9/dst-b:v1"]
    argv = [sys.executable, "-c", code, "image", "replicate", "127.0.0.1:9/src:v1", *to,
            "--insecure"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not [c for c in _calls(log) if c["argv"][0] == "copy"]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the copy never started"
            time.sleep(0.05)
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for call in _calls(log):
            if _alive(call["pid"]):
                os.kill(call["pid"], signal.SIGKILL)


def _authfile(call: dict) -> Path:
    argv = call["argv"]
    return Path(argv[argv.index("--dest-authfile") + 1])


@pytest.mark.parametrize(
    ("signum", "code", "words"),
    [
        (signal.SIGTERM, 143, ["terminated by SIGTERM", "0 of 2 copies finished",
                               "dst-a:v1 was stopped", "auth file removed"]),
        (signal.SIGINT, 130, ["interrupted"]),
    ],
)  # fmt: skip
def test_signal_mid_copy_stops_skopeo_and_removes_the_auth_file(replicate_run, signum, code,
                                                                words):  # fmt: skip
    proc, log = replicate_run
    (copy,) = [c for c in _calls(log) if c["argv"][0] == "copy"]
    authfile = _authfile(copy)
    assert authfile.exists()  # the login is there while skopeo runs
    proc.send_signal(signum)  # to the mdeploy process alone, not its group
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    for word in words:
        assert word in stderr, stderr
    assert not authfile.exists() and not authfile.parent.exists()
    assert not _alive(copy["pid"]), "skopeo was left running"
    assert [c["argv"][0] for c in _calls(log)].count("copy") == 1  # dst-b never started
    assert "pw-not-a-real-one" not in stderr and "Traceback" not in stderr
