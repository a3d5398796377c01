"""
templates/entrypoint.sh and mdeploy/serve/boot.py, run for real with /bin/sh on this machine.

The stand-in `mdeploy.serve` package holds the real boot.py (what entrypoint.sh execs, with
the standard library alone, as in the image) and a stand-in adapter that records how it was
started (pid, argv, MDEPLOY_ENGINE_ARGS), so each platform's start-up is checked end to
end: SageMaker's `serve` argument, the weights locations of SageMaker, Azure ML and
Kubernetes, Vertex's gs:// download (loopback fakes of the GCE metadata server and the GCS
JSON API), s3:// through moto, and SIGTERM reaching the exec'd adapter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import sysconfig
import urllib.parse
from pathlib import Path
from types import ModuleType

import pytest
from image.helpers import Seen, fake_http

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "templates" / "entrypoint.sh"
BOOT = REPO / "mdeploy" / "serve" / "boot.py"
STUB = """\
import json, os, signal, sys, time

record = {"pid": os.getpid(), "argv": sys.argv[1:],
          "engine_args": json.loads(os.environ["MDEPLOY_ENGINE_ARGS"])}
if os.environ.get("STUB_WAIT"):
    def stop(signum, frame):
        os.write(1, (json.dumps({"signal": signum}) + "\\n").encode())  # safe in a handler
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    print(json.dumps(record), flush=True)
    while True:
        time.sleep(0.02)
print(json.dumps(record))
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A bare environment: python3 on PATH, the stand-in adapter first on PYTHONPATH."""
    stub = tmp_path / "stub" / "mdeploy" / "serve"
    stub.mkdir(parents=True)
    (stub.parent / "__init__.py").write_text("")
    (stub / "__init__.py").write_text("")
    (stub / "__main__.py").write_text(STUB)
    (stub / "boot.py").write_bytes(BOOT.read_bytes())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # -S: no .pth files, so the editable mdeploy of this checkout cannot shadow the stand-in
    # (the image has no other mdeploy either); site-packages stay reachable for boto3.
    python = bin_dir / "python3"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    site = os.pathsep.join(sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")}))
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONPATH": f"{tmp_path / 'stub'}{os.pathsep}{site}",
        "MDEPLOY_SAGEMAKER_MODEL_DIR": str(tmp_path / "no-sagemaker"),
        "MDEPLOY_WEIGHTS_DIR": str(tmp_path / "weights"),
    }


def start(env: dict[str, str], *args: str) -> tuple[dict, subprocess.CompletedProcess]:
    proc = subprocess.run(
        [str(ENTRYPOINT), *args],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc


def model_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text("{}")
    return root


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_sagemaker_serve_argument_is_dropped_and_model_dir_used(
    env: dict[str, str], tmp_path: Path
) -> None:
    sagemaker = tmp_path / "opt-ml-model"
    model_dir(sagemaker / "wrapped")  # tar.gz archives often hold one top folder
    env["MDEPLOY_SAGEMAKER_MODEL_DIR"] = str(sagemaker)
    record, proc = start(env, "serve", "--log-level", "debug")
    assert record["argv"] == ["--log-level", "debug"]
    assert flag(record["engine_args"], "--model") == str(sagemaker / "wrapped")
    assert "(sagemaker)" in proc.stderr


def test_azure_model_dir_prefers_the_shallowest_config(env: dict[str, str], tmp_path: Path) -> None:
    mount = tmp_path / "azureml-models" / "tiny" / "1"
    model_dir(mount / "model")
    model_dir(mount / "model" / "aaa-tokenizer")  # a deeper config.json must not win
    env["AZUREML_MODEL_DIR"] = str(mount)
    record, _ = start(env)
    assert flag(record["engine_args"], "--model") == str(mount / "model")


def test_hub_source_is_left_to_the_engine_with_flags_from_the_environment(
    env: dict[str, str],
) -> None:
    env.update(
        MDEPLOY_MODEL_SOURCE="hf://acme/tiny-model",
        MDEPLOY_MODEL_REVISION="0123456789abcdef0123456789abcdef01234567",
        MDEPLOY_SERVED_MODEL_NAME="tiny",
        MDEPLOY_ENGINE_ARGS=json.dumps(["--max-model-len", "4096", "--max-num-seqs=16"]),
        SM_VLLM_MAX_NUM_SEQS="64",  # already set by the plan: the plan wins
        SM_VLLM_ENFORCE_EAGER="true",
        SM_VLLM_DISABLE_LOG_STATS="false",
        SM_VLLM_SWAP_SPACE="4",
    )
    record, _ = start(env)
    assert record["engine_args"] == [
        "--model", "acme/tiny-model",  # first, as the adapter's owned engine has it
        "--max-model-len", "4096", "--max-num-seqs=16",
        "--revision", "0123456789abcdef0123456789abcdef01234567",
        "--served-model-name", "tiny",
        "--enforce-eager",
        "--swap-space", "4",
    ]  # fmt: skip


def test_empty_azure_model_dir_falls_through_to_the_source(
    env: dict[str, str], tmp_path: Path
) -> None:
    # mdeploy attaches no model asset on Azure ML: a model dir without files (absent or
    # empty) must not become --model; the deployment's MDEPLOY_MODEL_SOURCE is used.
    (tmp_path / "azureml-models").mkdir()
    env.update(
        AZUREML_MODEL_DIR=str(tmp_path / "azureml-models"), MDEPLOY_MODEL_SOURCE="hf://acme/m"
    )
    record, proc = start(env)
    assert flag(record["engine_args"], "--model") == "acme/m"
    assert "(source)" in proc.stderr
    env["AZUREML_MODEL_DIR"] = str(tmp_path / "absent")
    record, _ = start(env)
    assert flag(record["engine_args"], "--model") == "acme/m"


def test_model_id_is_the_hub_fallback_when_the_spec_has_no_source(env: dict[str, str]) -> None:
    # model.source is optional in the spec; every target still passes MDEPLOY_MODEL_ID (and
    # Kubernetes an empty MDEPLOY_MODEL_SOURCE), which the engine downloads from the Hub.
    env.update(
        MDEPLOY_MODEL_ID="acme/tiny-model",
        MDEPLOY_MODEL_SOURCE="",
        MDEPLOY_MODEL_REVISION="0123456789abcdef0123456789abcdef01234567",
    )
    record, proc = start(env)
    assert flag(record["engine_args"], "--model") == "acme/tiny-model"
    assert flag(record["engine_args"], "--revision") == env["MDEPLOY_MODEL_REVISION"]
    assert "(hub)" in proc.stderr


def test_an_explicit_source_wins_over_the_model_id(env: dict[str, str]) -> None:
    env.update(MDEPLOY_MODEL_ID="acme/tiny-model", MDEPLOY_MODEL_SOURCE="hf://acme/other")
    record, _ = start(env)
    assert flag(record["engine_args"], "--model") == "acme/other"


def _image_env() -> dict[str, str]:
    """The ENV of templates/Dockerfile (one ENV instruction, `\\`-continued KEY=VALUE lines)."""
    joined = (REPO / "templates" / "Dockerfile").read_text().replace("\\\n", " ")
    (line,) = [ln for ln in joined.splitlines() if ln.startswith("ENV ")]
    return dict(item.split("=", 1) for item in line.split()[1:])


def test_image_env_answers_getuser_for_a_uid_without_passwd_entry() -> None:
    # The image runs as 10001, which has no /etc/passwd entry (no RUN step adds one); torch's
    # inductor cache calls getpass.getuser() when vLLM starts, which then needs USER/LOGNAME.
    code = (
        "import getpass, pwd\n"
        "def missing(uid):\n"
        "    raise KeyError(f'getpwuid(): uid not found: {uid}')\n"
        "pwd.getpwuid = missing\n"
        "print(getpass.getuser())\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env={"PATH": "/usr/bin:/bin", **_image_env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_no_model_anywhere_is_a_clear_failure(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [str(ENTRYPOINT)], env=env, cwd=env["HOME"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 64
    assert "MDEPLOY_MODEL_SOURCE" in proc.stderr and proc.stdout == ""


def test_bad_engine_args_stop_the_start(env: dict[str, str]) -> None:
    env.update(MDEPLOY_MODEL="acme/x", MDEPLOY_ENGINE_ARGS='{"not": "a list"}')
    proc = subprocess.run(
        [str(ENTRYPOINT)], env=env, cwd=env["HOME"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "MDEPLOY_ENGINE_ARGS" in proc.stderr and proc.stdout == ""


def test_sigterm_reaches_the_execd_adapter(env: dict[str, str]) -> None:
    env.update(MDEPLOY_MODEL="acme/x", STUB_WAIT="1")
    proc = subprocess.Popen(
        [str(ENTRYPOINT), "serve"], env=env, cwd=env["HOME"], stdout=subprocess.PIPE, text=True
    )
    try:
        record = json.loads(proc.stdout.readline())
        assert record["pid"] == proc.pid  # exec: no shell left between the platform and it
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert json.loads(proc.stdout.readline()) == {"signal": signal.SIGTERM}
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def fake_gcp(objects: dict[str, bytes], token: str = "gce-token"):
    """Loopback GCE metadata server + GCS JSON API (two listing pages)."""
    names = sorted(objects)

    def answer(request: Seen) -> tuple[int, dict[str, str], bytes]:
        url = urllib.parse.urlparse(request.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path.startswith("/computeMetadata/"):
            if request.headers.get("Metadata-Flavor") != "Google":
                return 403, {}, b""
            return 200, {}, json.dumps({"access_token": token, "expires_in": 3599}).encode()
        if request.headers.get("Authorization") != f"Bearer {token}":
            return 401, {}, b""
        if url.path == "/storage/v1/b/bucket/o":
            listed = [n for n in names if n.startswith(query.get("prefix", ""))]
            half = len(listed) // 2
            page = listed[half:] if query.get("pageToken") == "p2" else listed[:half]
            body: dict = {"items": [{"name": n, "size": str(len(objects[n]))} for n in page]}
            if "pageToken" not in query:
                body["nextPageToken"] = "p2"
            return 200, {}, json.dumps(body).encode()
        prefix = "/storage/v1/b/bucket/o/"
        if url.path.startswith(prefix) and query.get("alt") == "media":
            name = urllib.parse.unquote(url.path[len(prefix) :])
            return (200, {}, objects[name]) if name in objects else (404, {}, b"")
        return 404, {}, b""

    return fake_http(answer)


def test_vertex_downloads_aip_storage_uri(env: dict[str, str], tmp_path: Path) -> None:
    objects = {
        "models/tiny/": b"",  # folder marker
        "models/tiny/config.json": b'{"model_type": "llama"}',
        "models/tiny/model.safetensors": os.urandom(3 * 1024 * 1024),
        "models/tiny/tokenizer/tokenizer.json": b"{}",
        "models/tiny-other/config.json": b"not this model",
    }
    with fake_gcp(objects) as gcp:
        host = gcp.url.removeprefix("http://")
        env.update(
            AIP_STORAGE_URI="gs://bucket/models/tiny",
            GCE_METADATA_HOST=host,
            MDEPLOY_GCS_ENDPOINT=gcp.url,
        )
        record, proc = start(env)
    weights = Path(env["MDEPLOY_WEIGHTS_DIR"])
    assert flag(record["engine_args"], "--model") == str(weights)
    got = {str(p.relative_to(weights)): p.read_bytes() for p in weights.rglob("*") if p.is_file()}
    assert got == {
        k.removeprefix("models/tiny/"): v
        for k, v in objects.items()
        if k.startswith("models/tiny/") and not k.endswith("/")
    }
    assert "fetched 3 files" in proc.stderr and "gce-token" not in proc.stderr


def test_s3_source_is_downloaded(env: dict[str, str], aws_env: str) -> None:
    import boto3

    s3 = boto3.client("s3", region_name="eu-west-3")
    s3.create_bucket(
        Bucket="weights", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )
    s3.put_object(Bucket="weights", Key="m/v1/config.json", Body=b"{}")
    s3.put_object(Bucket="weights", Key="m/v1/shard-1.safetensors", Body=b"x" * 1000)
    s3.put_object(Bucket="weights", Key="m/v10/config.json", Body=b"other model")
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ):
        env[name] = os.environ[name]
    env["MDEPLOY_MODEL_SOURCE"] = "s3://weights/m/v1"
    record, _ = start(env)
    weights = Path(env["MDEPLOY_WEIGHTS_DIR"])
    assert flag(record["engine_args"], "--model") == str(weights)
    assert sorted(p.name for p in weights.iterdir()) == ["config.json", "shard-1.safetensors"]


# --- boot.py as a module -----------------------------------------------------------------


@pytest.fixture(scope="module")
def boot() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mdeploy_image_boot", BOOT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_local_model_gets_no_revision_flag(boot: ModuleType, tmp_path: Path) -> None:
    args = boot.engine_args(str(tmp_path), {"MDEPLOY_MODEL_REVISION": "abc"})
    assert args == ["--model", str(tmp_path)]


def test_object_names_cannot_escape_the_weights_dir(boot: ModuleType, tmp_path: Path) -> None:
    assert boot._target(tmp_path, "m/", "m/a/b.bin") == (tmp_path / "a" / "b.bin").resolve()
    assert boot._target(tmp_path, "m/", "m/dir/") is None
    with pytest.raises(boot.BootError):
        boot._target(tmp_path, "m/", "m/../../etc/passwd")


def test_unsupported_scheme_and_usage(
    boot: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(boot.BootError) as info:
        boot.fetch("https://example.com/m", tmp_path)
    assert info.value.code == 2
    assert boot.main(["nonsense"]) == 2
    assert "usage" in capsys.readouterr().err
