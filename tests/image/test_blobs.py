"""
The blob reader of `image verify`: the Distribution API's logins and redirects, against a
real password-protected registry (Basic) and a loopback fake of the Bearer token exchange
that ECR, ACR, Artifact Registry and Docker Hub use.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from image.helpers import Registry, Seen, fake_http, make_oci_image, need

from mdeploy.errors import CloudError
from mdeploy.image import verify_image
from mdeploy.image.blobs import BlobReader
from mdeploy.image.refs import parse_ref

DATA = b"layer bytes " * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


def _authfile(tmp_path: Path, host: str, user: str, password: str) -> Path:
    path = tmp_path / "auth.json"
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


@pytest.mark.tools
def test_verify_logs_in_to_a_password_protected_registry(
    auth_registry: tuple[Registry, str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    clean_auth_env: Path,
) -> None:
    need("skopeo")
    registry, user, password = auth_registry
    layout = tmp_path / "layout"
    digest = make_oci_image(layout, "v1", {"a.txt": b"behind a login\n"})
    target = f"{registry.repo()}:v1"
    monkeypatch.setenv("MDEPLOY_REGISTRY_USER", user)
    monkeypatch.setenv("MDEPLOY_REGISTRY_PASSWORD", password)
    monkeypatch.setenv("MDEPLOY_REGISTRY_HOST", registry.host)
    authfile = _authfile(tmp_path, registry.host, user, password)
    subprocess.run(
        ["skopeo", "copy", "--all", "--preserve-digests", "--quiet", "--dest-tls-verify=false",
         "--dest-authfile", str(authfile), f"oci:{layout}:v1", f"docker://{target}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    check = verify_image(target, digest, insecure=True)
    assert check.verified and check.blobs_checked == 4


def test_bearer_token_exchange_and_a_redirect_that_drops_the_login(tmp_path: Path) -> None:
    def storage(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        if "Authorization" in seen.headers:  # a presigned URL refuses a second credential
            return 400, {}, b"only one auth mechanism allowed"
        return 200, {}, DATA

    with fake_http(storage) as blob_store:
        # the registry redirects to "another host": the same loopback address by name
        store_url = blob_store.url.replace("127.0.0.1", "localhost")

        def registry(seen: Seen) -> tuple[int, dict[str, str], bytes]:
            if seen.path.startswith("/token"):
                assert (
                    seen.headers.get("Authorization")
                    == "Basic " + base64.b64encode(b"AWS:secret-token").decode()
                )
                assert "scope=repository%3Ateam%2Fvllm%3Apull" in seen.path
                return 200, {}, json.dumps({"token": "bearer-123"}).encode()
            if seen.headers.get("Authorization") != "Bearer bearer-123":
                realm = f"{service.url}/token"
                challenge = (
                    f'Bearer realm="{realm}",service="registry",scope="repository:team/vllm:pull"'
                )
                return 401, {"WWW-Authenticate": challenge}, b""
            if seen.path == f"/v2/team/vllm/blobs/{DIGEST}":
                return 307, {"Location": f"{store_url}/bucket/blob?sig=x"}, b""
            return 404, {}, b""

        with fake_http(registry) as service:
            host = service.url.removeprefix("http://")
            authfile = _authfile(tmp_path, host, "AWS", "secret-token")
            reader = BlobReader(parse_ref(f"{host}/team/vllm:v1"), insecure=True,
                                authfile=authfile)  # fmt: skip
            assert reader.sha256(DIGEST) == DIGEST
            assert reader.sha256("sha256:" + "0" * 64) is None  # 404: missing, not an error
        assert [s.path for s in blob_store.seen] == ["/bucket/blob?sig=x"]


def test_a_refused_login_is_a_cloud_error_without_the_password(tmp_path: Path) -> None:
    def registry(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""

    with fake_http(registry) as service:
        host = service.url.removeprefix("http://")
        authfile = _authfile(tmp_path, host, "u", "hunter2-password")
        reader = BlobReader(parse_ref(f"{host}/x/y:1"), insecure=True, authfile=authfile)
        with pytest.raises(CloudError, match="refused the login") as info:
            reader.sha256(DIGEST)
    assert "hunter2" not in info.value.message
