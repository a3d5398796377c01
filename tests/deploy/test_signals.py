"""
`up` cancelled while the Pulumi CLI runs: SIGTERM (how CI cancels a job) and SIGINT sent to
the mdeploy process alone (not its process group). Real processes: mdeploy in a subprocess
driving the fake Pulumi CLI, whose slow `up` cancels gracefully on SIGINT.

The mdeploy child resets SIGINT to Python's default handler first: a test run started as a
background job has SIGINT ignored, and children inherit that.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

CODE = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from mdeploy.cli.app import main; main()"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = f"/proc/{pid}/stat"
    if os.path.exists(stat):  # a zombie whose parent is gone counts as stopped
        with open(stat) as f:
            return not f.read().split(") ", 1)[1].startswith("Z")
    return True


@pytest.mark.parametrize(
    ("signum", "code", "words"),
    [
        (signal.SIGTERM, 143, ["terminated by SIGTERM", "the update was cancelled",
                               "pulumi cancel --stack mistral-7b-chat-default-kubernetes"]),
        (signal.SIGINT, 130, ["cancelling", "interrupted"]),
    ],
)  # fmt: skip
def test_signal_to_mdeploy_alone_cancels_pulumi_gracefully(fake_pulumi, spec_file, monkeypatch,
                                                           signum, code, words):  # fmt: skip
    monkeypatch.setenv("FAKE_PULUMI_SLOW_UP", "60")
    monkeypatch.setenv("MDEPLOY_TERM_GRACE_S", "20")
    argv = [sys.executable, "-c", CODE, "up", str(spec_file), "-t", "coreweave", "--yes"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running = fake_pulumi.state / "up-running"
    pulumi_pid = None
    try:
        deadline = time.monotonic() + 60
        while not running.exists() or not running.read_text():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the fake up never started"
            time.sleep(0.05)
        pulumi_pid = int(running.read_text())
        proc.send_signal(signum)  # the mdeploy process alone
        _, stderr = proc.communicate(timeout=40)  # far less than the 60 s slow up
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if pulumi_pid and _alive(pulumi_pid):
            os.kill(pulumi_pid, signal.SIGKILL)
    assert proc.returncode == code, stderr
    for word in words:
        assert word in stderr, stderr
    # Pulumi got one SIGINT (cancel, finish in flight, write state), not a kill, and is gone.
    assert (fake_pulumi.state / "up-finished").read_text() == "canceled"
    assert not _alive(pulumi_pid)
    assert "Traceback" not in stderr


def test_sigterm_before_pulumi_runs_says_nothing_was_created(fake_pulumi, spec_file,
                                                             monkeypatch, tmp_path):  # fmt: skip
    # A quota check that hangs (a slow cloud API): SIGTERM lands in the pre-flight.
    hook = tmp_path / "sitecustomize.py"
    hook.write_text(
        "import time\n"
        "from mdeploy.targets.kubernetes.target import KubernetesTarget\n"
        "def slow(self, args):\n"
        "    open(__import__('os').environ['QUOTA_MARK'], 'w').close(); time.sleep(60)\n"
        "KubernetesTarget.quota_problem = slow\n"
    )
    mark = tmp_path / "quota-asked"
    monkeypatch.setenv("QUOTA_MARK", str(mark))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    argv = [sys.executable, "-c", CODE, "up", str(spec_file), "-t", "coreweave", "--yes"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not mark.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the quota check never ran"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr
    assert "pre-flight checks: nothing was created" in stderr
    assert fake_pulumi.calls() == []
