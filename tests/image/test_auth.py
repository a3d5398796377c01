"""
Registry logins: host → provider dispatch, each provider's token path over real HTTP (moto for
ECR, loopback fakes of the ACR exchange and Google's token endpoint), and the auth file.
"""

from __future__ import annotations

import base64
import json
import stat
import urllib.parse
from pathlib import Path

import pytest
from image.helpers import Seen, fake_http

from mdeploy.errors import CloudError, InputError, PrerequisiteError
from mdeploy.image._tools import redact
from mdeploy.image.auth import credentials_for, provider_for, registry_authfile
from mdeploy.image.refs import parse_ref
from mdeploy.targets.aws import registry as aws
from mdeploy.targets.azure import registry as azure
from mdeploy.targets.gcp import registry as gcp
from mdeploy.targets.kubernetes import registry as k8s
from mdeploy.targets.kubernetes.registry import Credentials

ECR = "123456789012.dkr.ecr.eu-west-3.amazonaws.com"


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        (ECR, "aws"),
        ("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", "aws"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "aws"),
        ("mdeployeu.azurecr.io", "azure"),
        ("europe-west4-docker.pkg.dev", "gcp"),
        ("eu.gcr.io", "gcp"),
        ("registry.example.com:5000", "kubernetes"),
        ("127.0.0.1:5000", "kubernetes"),
        ("docker.io", "kubernetes"),
        ("evil.azurecr.io.example.com", "kubernetes"),
        ("123456789012.dkr.ecr.eu-west-3.amazonaws.com.evil.io", "kubernetes"),
    ],
)
def test_provider_is_chosen_by_host(host: str, provider: str) -> None:
    assert provider_for(host) == provider


def test_local_transports_need_no_login(clean_auth_env: Path) -> None:
    assert credentials_for(parse_ref("oci:/tmp/layout:v1")) is None
    assert credentials_for(parse_ref("127.0.0.1:5000/x:1")) is None


# --- the auth file --------------------------------------------------------------------------


def test_authfile_is_private_merged_and_deleted(clean_auth_env: Path) -> None:
    existing = clean_auth_env / ".config" / "containers" / "auth.json"
    existing.parent.mkdir(parents=True)
    existing.write_text(
        json.dumps(
            {
                "auths": {"other.example": {"auth": "b3RoZXI6c2VjcmV0"}},
                "credHelpers": {"r.example": "ecr-login", "keep.example": "gcloud"},
            }
        )
    )
    creds = Credentials("robot", "s3cr3t-value", source="test")
    refs = [parse_ref("r.example/team/vllm:1"), parse_ref("oci:/tmp/x:1")]

    with registry_authfile(refs, resolver=lambda ref: creds) as authfile:
        assert authfile is not None
        path = authfile.path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        data = json.loads(path.read_text())
        assert base64.b64decode(data["auths"]["r.example"]["auth"]) == b"robot:s3cr3t-value"
        assert data["auths"]["other.example"] == {"auth": "b3RoZXI6c2VjcmV0"}  # kept
        assert data["credHelpers"] == {"keep.example": "gcloud"}  # ours wins for r.example
        assert "s3cr3t-value" not in repr(authfile) and "s3cr3t-value" not in repr(creds)
        assert "s3cr3t-value" not in str(creds)
    assert not path.exists() and not path.parent.exists()


def test_authfile_is_deleted_when_the_block_fails(clean_auth_env: Path) -> None:
    creds = Credentials("u", "p")
    with (
        pytest.raises(RuntimeError),
        registry_authfile([parse_ref("r.example/x:1")], resolver=lambda ref: creds) as authfile,
    ):
        kept = authfile.path
        raise RuntimeError("boom")
    assert not kept.exists()


def test_no_login_means_no_authfile(clean_auth_env: Path) -> None:
    with registry_authfile([parse_ref("r.example/x:1")], resolver=lambda ref: None) as authfile:
        assert authfile is None


def test_redact_masks_secret_values() -> None:
    assert (
        redact("denied for robot:hunter2 at r", ["hunter2", ""]) == "denied for robot:[secret] at r"
    )


# --- kubernetes / any OCI registry ---------------------------------------------------------


def test_generic_login_from_environment_is_scoped_to_its_host(
    clean_auth_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDEPLOY_REGISTRY_USER", "robot")
    monkeypatch.setenv("MDEPLOY_REGISTRY_PASSWORD", "pw")
    assert k8s.registry_credentials("docker://r.example/x:1") == Credentials(
        "robot", "pw", source="MDEPLOY_REGISTRY_USER/MDEPLOY_REGISTRY_PASSWORD"
    )
    assert k8s.registry_credentials("vllm/vllm-openai:v0.14.0") is None  # docker.io: public
    assert k8s.registry_credentials("ghcr.io/acme/x:1") is None
    monkeypatch.setenv("MDEPLOY_REGISTRY_HOST", "r.example")
    assert k8s.registry_credentials("other.example/x:1") is None
    assert k8s.registry_credentials("r.example/x:1") is not None


def test_generic_login_from_an_existing_auth_file(
    clean_auth_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    auth = tmp_path / "auth.json"
    token = base64.b64encode(b"alice:pa:ss").decode()
    auth.write_text(json.dumps({"auths": {"r.example:5000": {"auth": token}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    creds = k8s.registry_credentials("r.example:5000/x:1")
    assert creds is not None and (creds.username, creds.password) == ("alice", "pa:ss")
    assert k8s.registry_credentials("r.example:6000/x:1") is None


def test_generic_repository_names() -> None:
    assert k8s.repository_for("registry.example.com:5000", "vllm", namespace="ml") == (
        "registry.example.com:5000/ml/vllm"
    )
    with pytest.raises(InputError):
        k8s.repository_for("registry.example.com", "Vllm")


# --- AWS ECR against moto over HTTP ---------------------------------------------------------


def test_ecr_login_from_moto(aws_env: str) -> None:
    creds = credentials_for(parse_ref(f"{ECR}/mdeploy/vllm:1"))  # dispatch by host
    assert creds is not None
    assert creds.username == "AWS"
    assert creds.password == "123456789012-auth-token"  # moto derives it from the registry id
    assert "eu-west-3" in creds.source and creds.password not in repr(creds)
    assert aws.registry_credentials("ghcr.io/acme/vllm:1") is None


def test_ecr_without_aws_credentials_is_a_prerequisite_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(PrerequisiteError) as info:
        aws.registry_credentials(f"{ECR}/x:1")
    assert "aws configure" in (info.value.hint or "")


def test_ecr_repository_names() -> None:
    assert aws.repository_for("123456789012", "eu-west-3", "mdeploy/vllm") == f"{ECR}/mdeploy/vllm"
    assert aws.repository_for("123456789012", "cn-north-1", "v").endswith(".amazonaws.com.cn/v")
    with pytest.raises(InputError):
        aws.repository_for("1234", "eu-west-3", "v")


# --- Azure ACR: AAD token → refresh token exchange (loopback fake of the registry) ---------


class FakeAzureCredential:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.scopes: list[str] = []

    def get_token(self, *scopes: str) -> object:
        self.scopes.extend(scopes)
        if self.error:
            raise self.error
        return type("Token", (), {"token": "aad-token-value", "expires_on": 0})()


def test_acr_exchange(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-1")

    def answer(request: Seen) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, b'{"refresh_token": "acr-refresh"}'

    credential = FakeAzureCredential()
    with fake_http(answer) as acr:
        creds = azure.registry_credentials(
            "mdeployeu.azurecr.io/mdeploy/vllm:1", credential=credential, base_url=acr.url
        )
    assert creds == Credentials(azure.ACR_USER, "acr-refresh", source="acr oauth2/exchange")
    (request,) = acr.seen
    assert (request.method, request.path) == ("POST", "/oauth2/exchange")
    form = dict(urllib.parse.parse_qsl(request.body.decode()))
    assert form == {
        "grant_type": "access_token",
        "service": "mdeployeu.azurecr.io",
        "access_token": "aad-token-value",
        "tenant": "tenant-1",
    }
    assert credential.scopes == [azure.AAD_SCOPE]
    assert azure.registry_credentials("ghcr.io/x:1", credential=credential) is None


def test_acr_refusal_does_not_leak_the_token() -> None:
    def answer(request: Seen) -> tuple[int, dict[str, str], bytes]:
        return 401, {}, b'{"errors": [{"code": "UNAUTHORIZED"}]}'

    with fake_http(answer) as acr, pytest.raises(CloudError) as info:
        azure.registry_credentials(
            "mdeployeu.azurecr.io/x:1", credential=FakeAzureCredential(), base_url=acr.url
        )
    assert "401" in info.value.message and "aad-token-value" not in info.value.message


def test_acr_without_azure_credentials_is_a_prerequisite_error() -> None:
    from azure.identity import CredentialUnavailableError

    credential = FakeAzureCredential(CredentialUnavailableError("no az login"))
    with pytest.raises(PrerequisiteError) as info:
        azure.registry_credentials("mdeployeu.azurecr.io/x:1", credential=credential)
    assert "az login" in (info.value.hint or "")


def test_acr_repository_names() -> None:
    assert azure.repository_for("mdeployeu", "vllm") == "mdeployeu.azurecr.io/vllm"
    with pytest.raises(InputError):
        azure.repository_for("ab", "vllm")


# --- GCP Artifact Registry: ADC access token (loopback fake of the token endpoint) ---------


def service_account_info(token_uri: str) -> dict[str, str]:
    """A service-account key file whose token endpoint is `token_uri` (a fresh RSA key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "my-proj-1",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "ci@my-proj-1.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


def test_artifact_registry_login_from_adc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def answer(request: Seen) -> tuple[int, dict[str, str], bytes]:
        body = {"access_token": "ya29.fake", "expires_in": 3600, "token_type": "Bearer"}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    with fake_http(answer) as google:
        adc = tmp_path / "sa.json"
        adc.write_text(json.dumps(service_account_info(f"{google.url}/token")))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
        creds = credentials_for(parse_ref("europe-west4-docker.pkg.dev/p/r/vllm:1"))
    assert creds == Credentials("oauth2accesstoken", "ya29.fake", source=creds.source)
    (request,) = google.seen
    assert request.path == "/token"
    form = dict(urllib.parse.parse_qsl(request.body.decode()))
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert form["assertion"].count(".") == 2  # a JWT signed with the key of the file


def test_artifact_registry_without_credentials_is_a_prerequisite_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    with pytest.raises(PrerequisiteError) as info:
        gcp.registry_credentials("europe-west4-docker.pkg.dev/p/r/vllm:1")
    assert "gcloud auth application-default login" in (info.value.hint or "")


def test_artifact_registry_repository_names() -> None:
    assert gcp.repository_for("my-proj-1", "europe-west4", "mdeploy", "vllm") == (
        "europe-west4-docker.pkg.dev/my-proj-1/mdeploy/vllm"
    )
    with pytest.raises(InputError):
        gcp.repository_for("my-proj-1", "europe_west4", "mdeploy", "vllm")
