"""
up / preview / destroy / status / outputs through the Automation API, against the fake CLI.

The fake `pulumi` (fake_pulumi.py) logs every call, so these tests check what mdeploy asks of
Pulumi: the checks that run first, the stack name, config, plugins, phase ordering, events.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

STACK = "mistral-7b-chat-default-kubernetes"
DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"


def _json(result) -> dict:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def test_up_without_pulumi_exits_3_with_install_hint(spec_file, python_only_path, tmp_path):
    env = {
        "PATH": python_only_path,
        "HOME": str(tmp_path),
        "MDEPLOY_HOME": str(tmp_path / "home"),
        "CI": "true",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE12",
        "AWS_SECRET_ACCESS_KEY": "not-a-secret",
    }
    code = "from mdeploy.cli.app import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "up", str(spec_file), "--target", "aws", "--yes"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "Pulumi CLI is not installed" in proc.stderr
    assert "get.pulumi.com" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_up_kubernetes_end_to_end(cli, fake_pulumi, spec_file, facts, monkeypatch):
    fake_pulumi.script(
        monkeypatch,
        outputs={"endpoint_url": "http://x.mdeploy.svc.cluster.local", "api_key": {"secret": "k"}},
    )
    result = cli("up", spec_file, "--target", "coreweave", "--json")
    assert result.exit_code == 0, result.stderr
    summary = _json(result)
    assert summary["stack"] == STACK and summary["result"] == "succeeded"
    assert summary["changes"] == {"create": 3}
    assert summary["outputs"] == {
        "api_key": "[secret]",
        "endpoint_url": "http://x.mdeploy.svc.cluster.local",
    }
    assert "replication" not in summary  # image pulled from where the spec points
    calls = fake_pulumi.calls()
    assert ["stack", "init", STACK, "--secrets-provider", "passphrase"] in calls
    plugins = [c[3:5] for c in calls if c[:2] == ["plugin", "install"]]
    assert plugins == [["kubernetes", "v4.34.2"], ["random", "v4.21.4"]]
    (up,) = [c for c in calls if c[0] == "up"]
    assert "--event-log" in up and "--target" not in up
    assert up[up.index("--stack") + 1] == STACK
    assert fake_pulumi.passphrase_seen()
    # CI mode: one plain line per resource event on stderr, never the secret's value.
    assert "create" in result.stderr and "kubernetes:apps/v1:Deployment" in result.stderr
    assert facts.canary not in result.stdout + result.stderr


def test_state_goes_to_mdeploy_home_file_backend(cli, fake_pulumi, spec_file, tmp_path):
    assert cli("up", spec_file, "-t", "coreweave", "--json").exit_code == 0
    project = (tmp_path / "home" / "workspaces" / STACK / "Pulumi.yaml").read_text()
    assert f"file://{tmp_path / 'home' / 'state'}" in project
    assert (tmp_path / "home" / "state").is_dir()


def test_second_up_reselects_the_stack(cli, fake_pulumi, spec_file):
    assert cli("up", spec_file, "-t", "coreweave", "--yes").exit_code == 0
    assert cli("up", spec_file, "-t", "coreweave", "--yes").exit_code == 0
    inits = [c for c in fake_pulumi.calls() if c[:2] == ["stack", "init"]]
    assert len(inits) == 1


def test_aws_up_is_two_phase_with_replication(cli, fake_pulumi, spec_file, facts, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE12")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    log = fake_pulumi.state / "calls.jsonl"

    def fake_replicate(source, targets, **kwargs):
        with log.open("a") as f:
            f.write(json.dumps({"argv": ["REPLICATE", source, *targets], "passphrase": True}))
            f.write("\n")
        from types import SimpleNamespace

        return SimpleNamespace(to_json=lambda: {"source": source, "copies": list(targets)})

    module = sys.modules[importlib.import_module("mdeploy.image.replicate").__name__]
    monkeypatch.setattr(module, "replicate", fake_replicate)
    monkeypatch.setattr(module, "inspect_image", lambda ref: (facts.digest, DOCKER_V2S2))
    account = "--config=mdeploy:awsAccountId=123456789012"
    result = cli("up", spec_file, "--target", "aws", "--yes", "--json", account)
    assert result.exit_code == 0, result.stderr
    calls = fake_pulumi.calls()
    order = [c[0] for c in calls if c[0] in {"up", "REPLICATE"}]
    assert order == ["up", "REPLICATE", "up"]
    phase1 = next(c for c in calls if c[0] == "up")
    targets = [phase1[i + 1] for i, a in enumerate(phase1) if a == "--target"]
    assert any("aws:ecr/repository:Repository" in t for t in targets), targets
    replicate = next(c for c in calls if c[0] == "REPLICATE")
    assert replicate[1] == facts.image
    assert replicate[2].startswith("123456789012.dkr.ecr.")
    assert replicate[2].endswith("@" + facts.digest)
    config = fake_pulumi.stack("mistral-7b-chat-default-aws")["config"]
    region = config["aws:region"]
    assert f".dkr.ecr.{region}.amazonaws.com/" in replicate[2]
    assert config["mdeploy:awsAccountId"] == "123456789012"
    assert _json(result)["replication"]["copies"] == [replicate[2]]


def test_configured_registry_replicates_without_phase_one(cli, fake_pulumi, spec_file, monkeypatch):
    log = fake_pulumi.state / "calls.jsonl"

    def fake_replicate(source, targets, **kwargs):
        with log.open("a") as f:
            f.write(json.dumps({"argv": ["REPLICATE", source, *targets], "passphrase": True}))
            f.write("\n")
        from types import SimpleNamespace

        return SimpleNamespace(to_json=lambda: {"copies": list(targets)})

    module = sys.modules[importlib.import_module("mdeploy.image.replicate").__name__]
    monkeypatch.setattr(module, "replicate", fake_replicate)
    repo = "registry.cluster.local:5000/ml/vllm"
    result = cli("up", spec_file, "-t", "coreweave", "--yes", "-c", f"mdeploy:registry={repo}")
    assert result.exit_code == 0, result.stderr
    calls = fake_pulumi.calls()
    order = [c[0] for c in calls if c[0] in {"up", "REPLICATE"}]
    assert order == ["REPLICATE", "up"]  # no repository resource to create first
    replicate = next(c for c in calls if c[0] == "REPLICATE")
    assert replicate[2].startswith(repo + "@sha256:")


def test_bad_config_flag_is_exit_2(cli, fake_pulumi, spec_file):
    result = cli("up", spec_file, "-t", "coreweave", "--yes", "-c", "registry=x")
    assert result.exit_code == 2
    assert "namespaced" in result.stderr


def test_destroy_works_for_a_spec_that_fails_guardrails(cli, fake_pulumi, spec_file):
    result = cli("destroy", spec_file, "-t", "coreweave", "--env", "prod", "--yes")
    assert result.exit_code == 0, result.stderr


def test_missing_passphrase_non_interactive_is_exit_3(cli, fake_pulumi, spec_file, monkeypatch):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 3
    assert "PULUMI_CONFIG_PASSPHRASE" in result.stderr
    assert fake_pulumi.calls() == []  # nothing started


def test_passphrase_file_is_accepted(cli, fake_pulumi, spec_file, monkeypatch, tmp_path):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    path = tmp_path / "pass"
    path.write_text("from-a-file\n")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(path))
    assert cli("up", spec_file, "-t", "coreweave", "--yes").exit_code == 0
    assert fake_pulumi.passphrase_seen()


def test_relative_passphrase_file_reaches_pulumi(cli, fake_pulumi, spec_file, monkeypatch,
                                                 tmp_path):  # fmt: skip
    # The CLI runs in the stack's workspace under MDEPLOY_HOME, not in the user's folder.
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    (tmp_path / "pass").write_text("from-a-file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", "pass")
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 0, result.stderr
    assert fake_pulumi.passphrase_seen()


def test_unset_secret_reference_is_exit_3_without_value(cli, fake_pulumi, spec_file, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 3
    assert "HF_TOKEN" in result.stderr and "env:HF_TOKEN is not set" in result.stderr
    assert fake_pulumi.calls() == []


def test_missing_kubeconfig_is_exit_3(cli, fake_pulumi, spec_file, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 3
    assert "no kubeconfig" in result.stderr and "KUBECONFIG" in result.stderr


def test_prod_guardrails_refuse_before_pulumi_runs(cli, fake_pulumi, spec_file):
    result = cli("up", spec_file, "-t", "coreweave", "--env", "prod", "--yes")
    assert result.exit_code == 4
    assert "model.revision" in result.stderr
    assert fake_pulumi.calls() == []


def test_residency_refusal_is_exit_4(cli, fake_pulumi, spec_file):
    spec_file.write_text(spec_file.read_text().replace("residency: [EU]", "residency: [IS]"))
    result = cli("up", spec_file, "-t", "gcp", "--yes")
    assert result.exit_code == 4
    assert "no offer of gcp fits" in result.stderr
    assert fake_pulumi.calls() == []


def test_plugin_that_cannot_install_is_exit_3(cli, fake_pulumi, spec_file, monkeypatch):
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "plugin")
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 3
    assert "cannot install the Pulumi plugin kubernetes" in result.stderr
    assert not [c for c in fake_pulumi.calls() if c[0] == "up"]


@pytest.mark.parametrize("version", ["3.190.0", "3.272.0"])  # event log file | gRPC stream
def test_failed_update_is_exit_1_with_the_engine_message(cli, fake_pulumi, spec_file, monkeypatch,
                                                         version):  # fmt: skip
    # Like the real CLI, the fake reports a resource failure only as an engine diagnostic
    # (and on stdout) and exits 255 with an empty stderr: the message must come from there.
    monkeypatch.setenv("FAKE_PULUMI_VERSION", version)
    steps = [
        {"op": "create", "type": "kubernetes:core/v1:Namespace", "name": "namespace"},
        {"op": "create", "type": "kubernetes:apps/v1:Deployment", "name": "deployment",
         "fail": True},
    ]  # fmt: skip
    fake_pulumi.script(monkeypatch, events=steps)
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 1
    (final,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert final == f"error: stack {STACK}: deployment could not be created"
    assert "failed" in result.stderr  # the progress line for the failed resource
    assert "<{%" not in result.stderr  # the engine's raw colour directives are removed
    assert "Traceback" not in result.stderr


def test_failure_message_prefers_the_cli_error_then_the_engine_diagnostic():
    from types import SimpleNamespace

    from pulumi.automation import CommandResult
    from pulumi.automation.errors import create_command_error

    from mdeploy.deploy.engine_errors import failure

    bail = create_command_error(CommandResult(
        stdout="Updating (s)\nDiagnostics:\n    error: update failed\n"
               "    error: <{%reset%}>creating Endpoint: ResourceLimitExceeded<{%reset%}>",
        stderr="", code=255))  # fmt: skip
    assert failure(bail, None) == "creating Endpoint: ResourceLimitExceeded"
    progress = SimpleNamespace(errors=["update failed", "quota exceeded for ml.g5.xlarge"])
    assert failure(bail, progress) == "quota exceeded for ml.g5.xlarge"
    locked = create_command_error(CommandResult(
        stdout="", stderr="warning: x\nerror: the stack is currently locked by 1 lock(s)",
        code=255))  # fmt: skip
    assert failure(locked, progress) == "the stack is currently locked by 1 lock(s)"
    silent = create_command_error(CommandResult(stdout="", stderr="", code=255))
    assert failure(silent, None) == "the Pulumi CLI exited with code 255"


def test_events_stream_over_grpc_for_current_clis(cli, fake_pulumi, spec_file, monkeypatch):
    # CLIs newer than 3.205 send events to the SDK's gRPC server (`--event-log tcp://...`).
    monkeypatch.setenv("FAKE_PULUMI_VERSION", "3.272.0")
    result = cli("up", spec_file, "-t", "coreweave", "--json")
    assert result.exit_code == 0, result.stderr
    assert _json(result)["changes"] == {"create": 3}
    assert "kubernetes:apps/v1:Deployment deployment done" in result.stderr
    (up,) = [c for c in fake_pulumi.calls() if c[0] == "up"]
    assert up[up.index("--event-log") + 1].startswith("tcp://127.0.0.1:")
    preview = cli("preview", spec_file, "-t", "coreweave", "--json")
    assert preview.exit_code == 0, preview.stderr
    assert _json(preview)["changes"] == {"create": 3}


def test_up_with_replacement_needs_confirmation(cli, fake_pulumi, spec_file, monkeypatch):
    assert cli("up", spec_file, "-t", "coreweave", "--yes").exit_code == 0
    # The engine's steps for a create-before-delete replacement, in its order.
    steps = [
        {"op": "same", "type": "kubernetes:core/v1:Namespace", "name": "namespace"},
        {"op": "create-replacement", "type": "kubernetes:apps/v1:Deployment", "name": "deployment"},
        {"op": "replace", "type": "kubernetes:apps/v1:Deployment", "name": "deployment"},
        {"op": "delete-replaced", "type": "kubernetes:apps/v1:Deployment", "name": "deployment"},
    ]
    fake_pulumi.script(monkeypatch, events=steps)
    before = len([c for c in fake_pulumi.calls() if c[0] == "up"])
    result = cli("up", spec_file, "-t", "coreweave")
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    calls = fake_pulumi.calls()
    assert calls[-1][0] != "up" and any(c[0] == "preview" for c in calls)
    assert len([c for c in calls if c[0] == "up"]) == before
    done = cli("up", spec_file, "-t", "coreweave", "--yes", "--json")
    assert done.exit_code == 0, done.stderr
    assert _json(done)["changes"] == {"same": 1, "replace": 1}  # the engine's logical count


def test_up_refuses_when_the_stack_history_cannot_be_read(cli, fake_pulumi, spec_file,
                                                          monkeypatch):  # fmt: skip
    # Without --yes, `up` must preview a stack with history for replacements; a failure to
    # read that history (backend, passphrase) stops it instead of skipping the question.
    assert cli("up", spec_file, "-t", "coreweave", "--yes").exit_code == 0
    steps = [
        {"op": "create-replacement", "type": "kubernetes:apps/v1:Deployment", "name": "deployment"},
        {"op": "replace", "type": "kubernetes:apps/v1:Deployment", "name": "deployment"},
        {"op": "delete-replaced", "type": "kubernetes:apps/v1:Deployment", "name": "deployment"},
    ]
    fake_pulumi.script(monkeypatch, events=steps)
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "history")
    before = len([c for c in fake_pulumi.calls() if c[0] == "up"])
    result = cli("up", spec_file, "-t", "coreweave")
    assert result.exit_code == 1, result.stderr
    assert "history failed" in result.stderr
    assert len([c for c in fake_pulumi.calls() if c[0] == "up"]) == before


def test_confirmation_is_asked_with_the_live_table_off_screen(cli, fake_pulumi, spec_file):
    import io

    from rich.console import Console

    from mdeploy.deploy.progress import Progress
    from mdeploy.deploy.stack import destroy, prepare
    from mdeploy.spec import load_spec

    assert cli("up", spec_file, "-t", "coreweave", "--yes").exit_code == 0
    op = prepare(load_spec(spec_file), "coreweave", deploying=False)
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    progress = Progress(console, live=True)
    seen = []

    def confirm(question: str) -> bool:
        seen.append(progress.live_active)
        return True

    with progress:
        assert progress.live_active
        destroy(op, progress, confirm=confirm)
        assert progress.live_active  # back on screen for the operation
    assert seen == [False]


def test_destroy_requires_yes_when_non_interactive(cli, fake_pulumi, spec_file):
    assert cli("up", spec_file, "-t", "coreweave", "--yes").exit_code == 0
    result = cli("destroy", spec_file, "-t", "coreweave")
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert not [c for c in fake_pulumi.calls() if c[0] == "destroy"]
    result = cli("destroy", spec_file, "-t", "coreweave", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert _json(result)["changes"] == {"delete": 3}


def test_read_only_commands_never_create_a_stack(cli, fake_pulumi, spec_file):
    """status/outputs/destroy of an endpoint never deployed: answers, and no empty stack."""
    status = cli("status", spec_file, "-t", "coreweave", "--json")
    assert status.exit_code == 0, status.stderr
    assert _json(status)["deployed"] is False
    assert _json(cli("outputs", spec_file, "-t", "coreweave", "--json")) == {}
    gone = cli("destroy", spec_file, "-t", "coreweave", "--json")  # no --yes needed
    assert gone.exit_code == 0, gone.stderr
    assert _json(gone)["result"] == "absent"
    smoke = cli("invoke", spec_file, "-t", "coreweave")
    assert smoke.exit_code == 1 and "never deployed" in smoke.stderr
    assert not [c for c in fake_pulumi.calls() if c[:2] == ["stack", "init"]]


def test_preview_reports_changes(cli, fake_pulumi, spec_file):
    result = cli("preview", spec_file, "-t", "coreweave", "--json")
    assert result.exit_code == 0, result.stderr
    summary = _json(result)
    assert summary["operation"] == "preview" and summary["changes"] == {"create": 3}


def test_outputs_and_status(cli, fake_pulumi, spec_file, monkeypatch):
    fake_pulumi.script(
        monkeypatch,
        outputs={
            "endpoint_url": "http://mistral-7b-chat.mdeploy.svc.cluster.local",
            "namespace": "mdeploy",
            "service_name": "mistral-7b-chat",
            "api_key": {"secret": "super-secret-key"},
        },
    )
    assert cli("up", spec_file, "-t", "coreweave", "--yes").exit_code == 0
    result = cli("outputs", spec_file, "-t", "coreweave", "--json")
    assert result.exit_code == 0, result.stderr
    outs = _json(result)
    assert outs["api_key"] == "[secret]" and outs["namespace"] == "mdeploy"
    status = cli("status", spec_file, "-t", "coreweave", "--json")
    assert status.exit_code == 0, status.stderr
    report = _json(status)
    assert report["deployed"] is True
    assert report["health"]["state"] == "unknown"
    assert "port-forward svc/mistral-7b-chat" in report["health"]["detail"]
    assert "super-secret-key" not in result.stdout + status.stdout
    human = cli("status", spec_file, "-t", "coreweave")
    assert human.exit_code == 0, human.stderr
    assert "deployed" in human.stdout and "health.state" in human.stdout
    assert "super-secret-key" not in human.stdout


def test_ctrl_c_cancels_and_exits_130(cli, fake_pulumi, spec_file, monkeypatch):
    from pulumi import automation as auto

    def interrupted(self, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(auto.Stack, "up", interrupted)
    result = cli("up", spec_file, "-t", "coreweave", "--yes")
    assert result.exit_code == 130
    assert any(c[0] == "cancel" for c in fake_pulumi.calls())


def test_ctrl_c_waits_for_pulumi_to_cancel_gracefully(fake_pulumi, spec_file, monkeypatch):
    # Ctrl-C at a terminal reaches the whole foreground process group: mdeploy and the Pulumi
    # CLI it runs. The CLI then finishes the operations in flight and writes the state;
    # mdeploy must wait for that (not orphan it, not `pulumi cancel` a running update, which
    # on the file backend deletes its lock), then exit 130.
    import signal
    import time

    monkeypatch.setenv("FAKE_PULUMI_SLOW_UP", "60")
    # As at a terminal: Python's own SIGINT handler, even when this test run was started as a
    # background job (SIGINT ignored, and children inherit that).
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from mdeploy.cli.app import main; main()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "up", str(spec_file), "-t", "coreweave", "--yes"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (fake_pulumi.state / "up-running").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the fake up never started"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        _, stderr = proc.communicate(timeout=60)
        finished = (fake_pulumi.state / "up-finished").exists()  # when mdeploy was gone
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr
    assert finished, "mdeploy exited before the Pulumi CLI finished cancelling"
    assert (fake_pulumi.state / "up-finished").read_text() == "canceled"
    assert not [c for c in fake_pulumi.calls() if c[0] == "cancel"]
    assert "cancelling" in stderr and "interrupted" in stderr
    assert "Traceback" not in stderr


def test_pulumi_home_bin_is_found(fake_pulumi, monkeypatch, tmp_path):
    from mdeploy.deploy.prereqs import find_pulumi

    home = tmp_path / "pulumi-home"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "pulumi").symlink_to(fake_pulumi.root / "bin" / "pulumi")
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    monkeypatch.setenv("PULUMI_HOME", str(home))
    assert find_pulumi() == str(home / "bin" / "pulumi")


@pytest.mark.parametrize(
    ("env", "target", "stack"),
    [(None, "coreweave", STACK), ("staging", "aws", "mistral-7b-chat-staging-aws")],
)
def test_stack_names(env, target, stack):
    from mdeploy.deploy.program import stack_name

    assert stack_name("mistral-7b-chat", env, target) == stack


class _ChatHandler(BaseHTTPRequestHandler):
    """A stand-in endpoint: answers chat requests that carry the stack's API key."""

    seen: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _ChatHandler.seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                  "body": body})  # fmt: skip
        ok = self.headers.get("Authorization") == "Bearer super-secret-key"
        reply = json.dumps({"model": body.get("model"), "choices": [{"text": "ready"}]}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def test_invoke_is_a_smoke_test_through_the_stack_outputs(cli, fake_pulumi, spec_file,
                                                          monkeypatch):  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fake_pulumi.script(
            monkeypatch,
            outputs={
                "endpoint_url": f"http://127.0.0.1:{server.server_address[1]}",
                "api_key": {"secret": "super-secret-key"},
            },
        )
        assert cli("up", spec_file, "-t", "coreweave", "--yes").exit_code == 0
        result = cli("invoke", spec_file, "-t", "coreweave", "--prompt", "ping")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["choices"][0]["text"] == "ready"
        sent = _ChatHandler.seen[-1]
        assert sent["path"] == "/v1/chat/completions"
        assert sent["body"]["messages"] == [{"role": "user", "content": "ping"}]
        assert sent["body"]["model"] == "mistralai/Mistral-7B-Instruct-v0.3"
        assert "super-secret-key" not in result.stdout + result.stderr
        bad = cli("invoke", spec_file, "-t", "coreweave", "--data", "{not json")
        assert bad.exit_code == 2 and "--data" in bad.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_a_cli_that_ends_without_a_summary_is_a_cloud_error_not_a_traceback():
    from types import SimpleNamespace

    from mdeploy.deploy.interrupts import guarded
    from mdeploy.errors import CloudError

    op = SimpleNamespace(stack="s-default-aws", backend="file:///x")

    def no_summary():
        raise RuntimeError("summary event never found")  # pulumi.automation's own error

    with pytest.raises(CloudError, match="without a summary"):
        guarded(SimpleNamespace(cancel=lambda: None), no_summary, op)

    def other_bug():
        raise RuntimeError("something else")

    with pytest.raises(RuntimeError, match="something else"):
        guarded(SimpleNamespace(cancel=lambda: None), other_bug, op)
