"""
`mdeploy/serve/boot.py exec`: secret references (MDEPLOY_SECRET_REFS) resolved into the
environment before the adapter starts, run for real as processes talking HTTP on 127.0.0.1 only.

aws-sm: goes to a moto server through boto3; gcp-sm: to loopback fakes of the GCE metadata
server and the Secret Manager REST API; azure-kv: to loopback fakes of the managed identity
endpoints (Azure ML's MSI_ENDPOINT, App Service style IDENTITY_ENDPOINT, IMDS) and Key Vault.
Each fake checks what the real service would: the metadata header, the Bearer token, the
path and the api-version. Every test also checks that the command is exec'd (same PID), that
MDEPLOY_SECRET_REFS is gone from its environment, and that no value or token is printed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import sysconfig
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from image.helpers import Seen, fake_http

REPO = Path(__file__).resolve().parents[2]
BOOT = REPO / "mdeploy" / "serve" / "boot.py"
ENTRYPOINT = REPO / "templates" / "entrypoint.sh"
# The exec'd command: its PID, whether MDEPLOY_SECRET_REFS is still there, and the variables
# named in argv (values are compared by the test; they are throw-away test values).
CHILD = """\
import json, os, sys
print(json.dumps({"pid": os.getpid(), "refs_left": "MDEPLOY_SECRET_REFS" in os.environ,
                  "env": {k: os.environ.get(k) for k in sys.argv[1:]}}))
"""


def secret_value() -> str:
    return f"hf_{uuid.uuid4().hex}"


@dataclass
class Run:
    pid: int
    code: int
    stdout: str
    stderr: str

    @property
    def child(self) -> dict:
        assert self.code == 0, self.stderr
        return json.loads(self.stdout)

    def assert_nothing_leaked(self, *secrets: str) -> None:
        """boot's own output (stderr; stdout is the command's) holds none of `secrets`."""
        for secret in secrets:
            assert secret not in self.stderr


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A bare environment: no cloud settings or identity of the machine running the tests."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        # Nothing may reach a real metadata service from the tests.
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "MDEPLOY_AZURE_IMDS_ENDPOINT": "http://127.0.0.1:9",
    }


def boot_exec(env: dict[str, str], refs: dict[str, str] | None, *names: str) -> Run:
    """`python3 boot.py exec -- python3 -c CHILD NAMES...` with MDEPLOY_SECRET_REFS = refs."""
    run_env = dict(env)
    if refs is not None:
        run_env["MDEPLOY_SECRET_REFS"] = json.dumps(refs)
    proc = subprocess.Popen(
        [sys.executable, str(BOOT), "exec", "--", sys.executable, "-c", CHILD, *names],
        env=run_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=60)
    return Run(proc.pid, proc.returncode, stdout, stderr)


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def split(path: str) -> tuple[str, dict[str, str]]:
    url = urllib.parse.urlparse(path)
    return url.path, dict(urllib.parse.parse_qsl(url.query))


def reply(status: int, body: object = None) -> tuple[int, dict[str, str], bytes]:
    data = b"" if body is None else json.dumps(body).encode()
    return status, {"Content-Type": "application/json"}, data


# --- file: and the exec itself ------------------------------------------------------------


def test_file_reference_is_set_and_the_command_replaces_boot(
    env: dict[str, str], tmp_path: Path
) -> None:
    value = secret_value()
    (tmp_path / "token").write_text(value + "\n")
    (tmp_path / "crlf").write_bytes(b"two\nlines\r\n")
    run = boot_exec(
        env,
        {"HF_TOKEN": f"file:{tmp_path / 'token'}", "OTHER": f"file:{tmp_path / 'crlf'}"},
        "HF_TOKEN",
        "OTHER",
    )
    child = run.child
    assert child["env"] == {"HF_TOKEN": value, "OTHER": "two\nlines"}
    assert child["pid"] == run.pid  # exec: the command took over boot's process
    assert child["refs_left"] is False
    assert "HF_TOKEN set from its file: reference" in run.stderr
    run.assert_nothing_leaked(value)


def test_without_references_the_command_just_runs(env: dict[str, str]) -> None:
    run = boot_exec(env, None, "HF_TOKEN")
    assert run.child["env"] == {"HF_TOKEN": None} and run.child["pid"] == run.pid
    assert boot_exec(env, {}, "HF_TOKEN").child["refs_left"] is False


def test_a_value_already_set_wins_and_its_reference_is_not_read(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("from-the-file")
    env["HF_TOKEN"] = "set-by-the-operator"
    env["EMPTY"] = ""
    refs = {"HF_TOKEN": f"file:{tmp_path / 'missing'}", "EMPTY": f"file:{tmp_path / 'token'}"}
    run = boot_exec(env, refs, "HF_TOKEN", "EMPTY")
    assert run.child["env"] == {"HF_TOKEN": "set-by-the-operator", "EMPTY": "from-the-file"}
    assert "HF_TOKEN is already set" in run.stderr


@pytest.mark.parametrize(
    ("refs", "needle"),
    [
        ('{"HF_TOKEN": "k8s:hf/token"}', "Kubernetes"),
        ('{"HF_TOKEN": "env:HF_TOKEN"}', "mdeploy up"),
        ('{"HF_TOKEN": "vault:kv/hf"}', "unknown reference kind"),
        ('{"HF_TOKEN": "gcp-sm:hf"}', "projects/P/secrets/S"),
        ('{"HF_TOKEN": "azure-kv:https://evil.example.com/secrets/hf"}', "vault.azure.net"),
        ('{"HF_TOKEN": "aws-sm:arn:aws:s3:::bucket"}', "not a Secrets Manager ARN"),
        ('["HF_TOKEN"]', "JSON object"),
        ("not json", "not JSON"),
        ('{"1BAD": "file:/x"}', "not a usable variable name"),
    ],
)
def test_bad_references_are_input_errors(env: dict[str, str], refs: str, needle: str) -> None:
    env["MDEPLOY_SECRET_REFS"] = refs
    proc = subprocess.run(
        [sys.executable, str(BOOT), "exec", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and proc.stdout == ""
    if refs.startswith('{"HF_TOKEN"'):
        assert "HF_TOKEN" in proc.stderr


def test_usage_and_missing_command(env: dict[str, str]) -> None:
    usage = subprocess.run(
        [sys.executable, str(BOOT), "exec", "--"], env=env, capture_output=True, text=True
    )
    assert usage.returncode == 2 and "exec -- CMD" in usage.stderr
    missing = subprocess.run(
        [sys.executable, str(BOOT), "exec", "--", "no-such-command-mdeploy"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 127 and "no-such-command-mdeploy" in missing.stderr


# --- aws-sm: through moto --------------------------------------------------------------------


def _aws(env: dict[str, str]) -> dict[str, str]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env[name] = os.environ[name]
    return env


def test_aws_secret_from_secrets_manager(env: dict[str, str], aws_env: str) -> None:
    import boto3

    sm = boto3.client("secretsmanager", region_name="eu-west-3")
    text, blob = secret_value(), secret_value()
    arn = sm.create_secret(Name=f"mdeploy/hf-{uuid.uuid4().hex[:8]}", SecretString=text)["ARN"]
    blob_arn = sm.create_secret(Name=f"bin-{uuid.uuid4().hex[:8]}", SecretBinary=blob.encode())[
        "ARN"
    ]
    # The region comes from the ARN: none is configured in the child's environment.
    run = boot_exec(
        _aws(env), {"HF_TOKEN": f"aws-sm:{arn}", "BLOB": f"aws-sm:{blob_arn}"}, "HF_TOKEN", "BLOB"
    )
    assert run.child["env"] == {"HF_TOKEN": text, "BLOB": blob}
    assert run.child["refs_left"] is False
    run.assert_nothing_leaked(text, blob, "testing")


def test_aws_missing_secret_names_the_variable(env: dict[str, str], aws_env: str) -> None:
    arn = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:absent-AbCdEf"
    run = boot_exec(_aws(env), {"HF_TOKEN": f"aws-sm:{arn}"}, "HF_TOKEN")
    assert run.code == 1 and run.stdout == ""
    assert "HF_TOKEN (aws-sm)" in run.stderr and "ResourceNotFoundException" in run.stderr
    assert "Traceback" not in run.stderr


# --- gcp-sm: GCE metadata server + Secret Manager -------------------------------------------


def fake_gce_metadata(token: str, failures: int = 0):
    """The metadata server: 503 for the first `failures` token requests, then the token."""
    calls = {"n": 0}

    def answer(request: Seen) -> tuple[int, dict[str, str], bytes]:
        path, _ = split(request.path)
        if path != "/computeMetadata/v1/instance/service-accounts/default/token":
            return reply(404)
        if lower(request.headers).get("metadata-flavor") != "Google":
            return reply(403)
        calls["n"] += 1
        if calls["n"] <= failures:
            return reply(503)
        return reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    return fake_http(answer)


def fake_secret_manager(token: str, secrets: dict[str, str], failures: int = 0):
    """Secret Manager v1 `:access` for `secrets` (full version names); 503 `failures` times."""
    calls = {"n": 0}

    def answer(request: Seen) -> tuple[int, dict[str, str], bytes]:
        if lower(request.headers).get("authorization") != f"Bearer {token}":
            return reply(401, {"error": {"code": 401}})
        calls["n"] += 1
        if calls["n"] <= failures:
            return reply(503)
        path, _ = split(request.path)
        name = path.removeprefix("/v1/").removesuffix(":access")
        if not path.startswith("/v1/") or not path.endswith(":access") or name not in secrets:
            return reply(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
        data = base64.b64encode(secrets[name].encode()).decode()
        return reply(200, {"name": name, "payload": {"data": data, "dataCrc32c": "0"}})

    return fake_http(answer)


def test_gcp_secret_from_secret_manager(env: dict[str, str]) -> None:
    token, hf, other = f"ya29.{uuid.uuid4().hex}", secret_value(), "ünïcode value"
    secrets = {
        "projects/p1/secrets/hf/versions/4": hf,
        "projects/p1/secrets/other/versions/latest": other,
    }
    with fake_gce_metadata(token) as meta, fake_secret_manager(token, secrets) as api:
        env.update(
            GCE_METADATA_HOST=meta.url.removeprefix("http://"),
            MDEPLOY_SECRETMANAGER_ENDPOINT=api.url,
        )
        refs = {
            "HF_TOKEN": "gcp-sm:projects/p1/secrets/hf/versions/4",
            "OTHER": "gcp-sm:projects/p1/secrets/other",  # no version: the latest
        }
        run = boot_exec(env, refs, "HF_TOKEN", "OTHER")
    assert run.child["env"] == {"HF_TOKEN": hf, "OTHER": other}
    assert run.child["pid"] == run.pid and run.child["refs_left"] is False
    assert len(meta.seen) == 1  # one token for every reference
    assert sorted(split(s.path)[0] for s in api.seen) == [
        "/v1/projects/p1/secrets/hf/versions/4:access",
        "/v1/projects/p1/secrets/other/versions/latest:access",
    ]
    run.assert_nothing_leaked(hf, token)


def test_transient_failures_are_retried(env: dict[str, str]) -> None:
    token, hf = f"ya29.{uuid.uuid4().hex}", secret_value()
    secrets = {"projects/p1/secrets/hf/versions/1": hf}
    with (
        fake_gce_metadata(token, failures=2) as meta,
        fake_secret_manager(token, secrets, failures=1) as api,
    ):
        env.update(
            GCE_METADATA_HOST=meta.url.removeprefix("http://"),
            MDEPLOY_SECRETMANAGER_ENDPOINT=api.url,
        )
        run = boot_exec(env, {"HF_TOKEN": "gcp-sm:projects/p1/secrets/hf/versions/1"}, "HF_TOKEN")
    assert run.child["env"] == {"HF_TOKEN": hf}
    assert (len(meta.seen), len(api.seen)) == (3, 2)


def test_a_refused_connection_is_retried_then_fails_in_a_few_seconds(
    env: dict[str, str],
) -> None:
    env.update(GCE_METADATA_HOST="127.0.0.1:9", MDEPLOY_SECRETMANAGER_ENDPOINT="http://127.0.0.1:9")
    started = time.monotonic()
    run = boot_exec(env, {"HF_TOKEN": "gcp-sm:projects/p1/secrets/hf/versions/1"}, "HF_TOKEN")
    took = time.monotonic() - started
    assert run.code == 1 and run.stdout == ""
    assert "HF_TOKEN (gcp-sm)" in run.stderr and "gave up after 5 tries" in run.stderr
    assert took > 3.5  # the backoff waited between tries (a lower bound: load only adds)


# --- azure-kv: managed identity + Key Vault -----------------------------------------------

# source -> (variables the platform sets, given the fake's URL; path; api-version; header)
IDENTITY_SOURCES = {
    "azureml-msi": (
        lambda url: {"MSI_ENDPOINT": f"{url}/msi/token", "MSI_SECRET": "msi-secret-1"},
        "/msi/token",
        "2017-09-01",
        ("secret", "msi-secret-1"),
    ),
    "app-service": (
        lambda url: {"IDENTITY_ENDPOINT": f"{url}/msi/token", "IDENTITY_HEADER": "id-header-1"},
        "/msi/token",
        "2019-08-01",
        ("x-identity-header", "id-header-1"),
    ),
    "imds": (
        lambda url: {"MDEPLOY_AZURE_IMDS_ENDPOINT": url},
        "/metadata/identity/oauth2/token",
        "2018-02-01",
        ("metadata", "true"),
    ),
}


def fake_identity(source: str, token: str, failures: int = 0):
    _, want_path, want_api, (header, header_value) = IDENTITY_SOURCES[source]
    calls = {"n": 0}

    def answer(request: Seen) -> tuple[int, dict[str, str], bytes]:
        path, query = split(request.path)
        if path != want_path:
            return reply(404)
        if lower(request.headers).get(header) != header_value:
            return reply(400, {"error": "missing header"})
        if query.get("api-version") != want_api or query.get("resource") != (
            "https://vault.azure.net"
        ):
            return reply(400, {"error": "bad query"})
        calls["n"] += 1
        if calls["n"] <= failures:
            return reply(503)
        return reply(200, {"access_token": token, "expires_on": "1900000000", "resource": "kv"})

    return fake_http(answer)


def fake_key_vault(token: str, secrets: dict[str, str], echo_on_error: str = ""):
    """Key Vault: GET /secrets/NAME[/VERSION]?api-version=7.4 with the Bearer token."""

    def answer(request: Seen) -> tuple[int, dict[str, str], bytes]:
        path, query = split(request.path)
        if query.get("api-version") != "7.4":
            return reply(400, {"error": {"code": "BadParameter"}})
        if lower(request.headers).get("authorization") != f"Bearer {token}":
            return reply(401, {"error": {"code": "Unauthorized"}})
        if path in secrets:
            return reply(200, {"value": secrets[path], "id": f"https://kv{path}"})
        # A hostile or chatty error body must never reach the log.
        return reply(403, {"error": {"code": "Forbidden", "message": echo_on_error}})

    return fake_http(answer)


@pytest.mark.parametrize("source", sorted(IDENTITY_SOURCES))
def test_azure_secret_from_key_vault(env: dict[str, str], source: str) -> None:
    token, hf, other = f"eyJ.{uuid.uuid4().hex}", secret_value(), secret_value()
    secrets = {"/secrets/hf-token/0123abcd": hf, "/secrets/other": other}
    with fake_identity(source, token) as identity, fake_key_vault(token, secrets) as vault:
        env.update(IDENTITY_SOURCES[source][0](identity.url))
        env["MDEPLOY_KEYVAULT_ENDPOINT"] = vault.url
        refs = {
            "HF_TOKEN": "azure-kv:https://mdeploy-kv.vault.azure.net/secrets/hf-token/0123abcd",
            "OTHER": "azure-kv:mdeploy-kv/other",  # the short form, latest version
        }
        run = boot_exec(env, refs, "HF_TOKEN", "OTHER")
    assert run.child["env"] == {"HF_TOKEN": hf, "OTHER": other}
    assert run.child["pid"] == run.pid and run.child["refs_left"] is False
    assert len(identity.seen) == 1  # one token per audience
    assert len(vault.seen) == 2
    run.assert_nothing_leaked(hf, other, token, "msi-secret-1", "id-header-1")


def test_azure_identity_answering_503_is_retried(env: dict[str, str]) -> None:
    token, hf = f"eyJ.{uuid.uuid4().hex}", secret_value()
    with (
        fake_identity("azureml-msi", token, failures=1) as identity,
        fake_key_vault(token, {"/secrets/hf": hf}) as vault,
    ):
        env.update(IDENTITY_SOURCES["azureml-msi"][0](identity.url))
        env["MDEPLOY_KEYVAULT_ENDPOINT"] = vault.url
        run = boot_exec(env, {"HF_TOKEN": "azure-kv:mdeploy-kv/hf"}, "HF_TOKEN")
    assert run.child["env"] == {"HF_TOKEN": hf}
    assert len(identity.seen) == 2


def test_a_failing_reference_stops_the_start_without_leaking(
    env: dict[str, str], tmp_path: Path
) -> None:
    token, hf, good = f"eyJ.{uuid.uuid4().hex}", secret_value(), secret_value()
    (tmp_path / "good").write_text(good)
    with (
        fake_identity("azureml-msi", token) as identity,
        fake_key_vault(token, {}, echo_on_error=f"denied {hf} {token}") as vault,
    ):
        env.update(IDENTITY_SOURCES["azureml-msi"][0](identity.url))
        env["MDEPLOY_KEYVAULT_ENDPOINT"] = vault.url
        refs = {"A_GOOD": f"file:{tmp_path / 'good'}", "HF_TOKEN": "azure-kv:mdeploy-kv/hf"}
        run = boot_exec(env, refs, "HF_TOKEN")
    assert run.code == 1 and run.stdout == ""  # the command never ran
    assert "HF_TOKEN (azure-kv)" in run.stderr and "HTTP 403" in run.stderr
    assert len(vault.seen) == 1  # a 403 is not retried
    run.assert_nothing_leaked(hf, token, good, "msi-secret-1")


# --- through the entrypoint ---------------------------------------------------------------

ADAPTER = """\
import json, os
print(json.dumps({"pid": os.getpid(), "hf": os.environ.get("HF_TOKEN"),
                  "refs_left": "MDEPLOY_SECRET_REFS" in os.environ}))
"""


def test_entrypoint_starts_the_adapter_with_the_secret(env: dict[str, str], tmp_path: Path) -> None:
    stub = tmp_path / "stub" / "mdeploy" / "serve"
    stub.mkdir(parents=True)
    (stub.parent / "__init__.py").write_text("")
    (stub / "__init__.py").write_text("")
    (stub / "__main__.py").write_text(ADAPTER)
    (stub / "boot.py").write_bytes(BOOT.read_bytes())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python3"  # -S: the editable mdeploy of this checkout stays out
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    site = os.pathsep.join(sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")}))
    value = secret_value()
    (tmp_path / "hf").write_text(value + "\n")
    env.update(
        PATH=f"{bin_dir}:/usr/bin:/bin",
        PYTHONPATH=f"{tmp_path / 'stub'}{os.pathsep}{site}",
        MDEPLOY_SAGEMAKER_MODEL_DIR=str(tmp_path / "no-sagemaker"),
        MDEPLOY_MODEL="acme/tiny",
        MDEPLOY_SECRET_REFS=json.dumps({"HF_TOKEN": f"file:{tmp_path / 'hf'}"}),
    )
    proc = subprocess.Popen(
        [str(ENTRYPOINT), "serve"],
        env=env,
        cwd=env["HOME"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    record = json.loads(stdout)
    assert record == {"pid": proc.pid, "hf": value, "refs_left": False}
    assert value not in stderr


# --- one trimming rule with the targets ---------------------------------------------------

# What a token file or a pasted value can look like; the targets' reader
# (mdeploy/targets/_secrets.py) and the image's (boot.clean_secret) must agree on each.
TRIM_CASES = {
    "ECHOED": "hf_tok\n",
    "CRLF": "hf_tok\r\n",
    "PADDED": "  hf_tok \t\n",
    "MULTILINE": "two\nlines\r\n",
    "INNER_CRLF": "a\r\nb\r\n",
    "UNICODE_SPACE": "\u00a0hf_tok\u2003",
    "EMPTY": "",
    "BLANK": " \t\r\n",
}


def test_boot_and_the_targets_trim_secrets_the_same_way(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mdeploy.serve import boot
    from mdeploy.targets._secrets import read_local_secret

    refs, expected = {}, {}
    for name, content in TRIM_CASES.items():
        path = tmp_path / name
        path.write_bytes(content.encode())
        refs[name] = f"file:{path}"
        expected[name] = read_local_secret("file", str(path))
        assert boot.clean_secret(boot._file_secret(str(path))) == expected[name], name
        monkeypatch.setenv(f"MDEPLOY_TRIM_{name}", content)
        assert boot.clean_secret(content) == read_local_secret("env", f"MDEPLOY_TRIM_{name}")
    assert expected["ECHOED"] == expected["PADDED"] == expected["UNICODE_SPACE"] == "hf_tok"
    assert expected["EMPTY"] is expected["BLANK"] is None
    # The real process: an empty value counts as missing, so its variable stays unset.
    run = boot_exec(env, refs, *TRIM_CASES)
    assert run.child["env"] == expected
    assert "EMPTY: its file: reference is empty; left unset" in run.stderr
