"""`mdeploy serve`: cheap to load with the rest of the CLI, and a thin door to the adapter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from typer.testing import CliRunner

from mdeploy.cli.app import app

CLI = [sys.executable, "-c", "from mdeploy.cli.app import main; main()"]


def test_the_cli_does_not_load_the_server():
    # `mdeploy --help` must stay fast: the adapter, uvicorn and httpx load only in `serve`.
    code = (
        "import sys, mdeploy.cli.app\n"
        "print(sorted(m for m in ('uvicorn', 'httpx', 'mdeploy.serve.app') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_flags():
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--platform", "--port", "--host", "--engine-url", "--max-body-bytes", "--grace"):
        assert flag in result.output


def test_bad_platform_is_an_input_error():
    result = CliRunner().invoke(app, ["serve", "--platform", "heroku", "--engine-url", "http://x"])
    assert result.exit_code == 2
    assert "heroku" in result.output


def test_serve_prints_what_it_detected_and_serves(procs, pick_port):
    engine = procs.engine("--served-model-name", "org/m")
    port = pick_port()
    argv = [*CLI, "serve", "--platform", "azureml", "--host", "127.0.0.1", "--port", str(port)]
    adapter = procs.start([*argv, "--engine-url", engine.url], f"http://127.0.0.1:{port}")
    adapter.wait_for("/ready", lambda r: r.status_code == 200)
    r = adapter.post("/score", json={"prompt": "x"})
    assert r.json()["choices"][0]["text"] == "echo:x"
    adapter.process.send_signal(signal.SIGTERM)
    adapter.wait_exit(timeout=10)
    assert "platform: azureml (chosen with --platform" in adapter.log
    assert "routes: liveness /live, readiness /ready, inference /score" in adapter.log
    assert "Traceback" not in adapter.log


def test_the_entrypoint_without_uvicorn_says_what_to_install(tmp_path):
    # A directory shadowing `uvicorn` with a module that is not there stands in for a Python
    # without the serve extra (the image always has it).
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'uvicorn':\n"
        "            raise ModuleNotFoundError(\"No module named 'uvicorn'\", name='uvicorn')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    markers = ("AIP_", "AZUREML_", "SAGEMAKER_", "SM_", "MDEPLOY_", "VLLM_API_KEY")
    env = {k: v for k, v in os.environ.items() if not k.startswith(markers)}
    env.update(PYTHONPATH=str(tmp_path), MDEPLOY_ENGINE_URL="http://127.0.0.1:9")
    proc = subprocess.run(
        [sys.executable, "-m", "mdeploy.serve", "--host", "127.0.0.1", "--port", "1"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "uvicorn is not installed" in proc.stderr and "mdeploy[serve]" in proc.stderr
    assert "Traceback" not in proc.stderr
