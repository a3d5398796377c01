"""
Start-up of the mdeploy inference image: find the weights, build the engine flags, read the
secrets, then become the contract adapter. The one place that knows where a model is and
which flags start vLLM: `mdeploy.serve.engine` (the adapter's owned engine) uses the same
`find_model` and `engine_args`.

Runs inside the image with the standard library only (boto3, present in the vLLM image, just
for s3:// and aws-sm:, imported lazily) and imports nothing else from mdeploy, so it runs
before, and without, the adapter's own dependencies. entrypoint.sh is one line around it:

    python3 -m mdeploy.serve.boot start [serve] [ARG...]
                                      find the weights, set MDEPLOY_ENGINE_ARGS, resolve
                                      MDEPLOY_SECRET_REFS, then exec `python3 -m mdeploy.serve
                                      ARG...` (same PID: SIGTERM reaches the adapter, which
                                      drains before the platform's SIGKILL); SageMaker's
                                      `serve` argument is dropped
    python3 -m mdeploy.serve.boot fetch URI DEST
                                      download gs://B/PREFIX or s3://B/PREFIX into DEST
    python3 -m mdeploy.serve.boot engine-args --model M
                                      print the engine flags for the adapter (JSON list)
    python3 -m mdeploy.serve.boot exec -- CMD [ARG...]
                                      resolve MDEPLOY_SECRET_REFS into the environment, then
                                      become CMD (os.execvp)

Where the weights are (`find_model`), first match wins:
  MDEPLOY_MODEL           a path or Hugging Face id, used as is
  Vertex AI               AIP_STORAGE_URI (gs://...), downloaded to MDEPLOY_WEIGHTS_DIR
                          (default ~/weights) at start; the adapter alone passes it on as is
  Azure ML                AZUREML_MODEL_DIR, mounted by the platform, when it holds files
  SageMaker               /opt/ml/model (MDEPLOY_SAGEMAKER_MODEL_DIR), the unpacked
                          ModelDataUrl, when it holds files
  Kubernetes, any other   MDEPLOY_MODEL_SOURCE: hf://ORG/NAME (the engine downloads it, at
                          MDEPLOY_MODEL_REVISION), s3:// or gs:// (downloaded at start), or
                          the path of a mounted volume
  no source in the spec   MDEPLOY_MODEL_ID, a Hugging Face id the engine downloads
In a mounted or downloaded tree the model is the shallowest folder holding config.json
(archives and registered folders wrap the model in a folder), else the tree itself.

gs:// uses the service account of the machine (the GCE metadata server, as on Vertex AI;
GCE_METADATA_HOST overrides its address, MDEPLOY_GCS_ENDPOINT the storage API root).
s3:// uses boto3's usual credential chain (AWS_ENDPOINT_URL is honoured).

Engine flags (`engine_args`): `--model`, MDEPLOY_ENGINE_ARGS (set by the deployment from
the plan), then `--revision MDEPLOY_MODEL_REVISION` for a Hub id, `--served-model-name
MDEPLOY_SERVED_MODEL_NAME`, and `SM_VLLM_<NAME>=v` as `--<name> v` (the convention of vLLM's
SageMaker image). A flag already in MDEPLOY_ENGINE_ARGS is never added twice: the plan's
sizing wins, and building the flags again from their own output adds nothing.

Secrets (the one contract of every target): the deployment gives the container references,
never values, in MDEPLOY_SECRET_REFS, a JSON object ENV_NAME -> reference:
  aws-sm:<secret ARN>        Secrets Manager GetSecretValue through boto3 (region from the ARN;
                             a bare name uses boto3's region), with boto3's credential chain
                             (the SageMaker execution role); AWS_ENDPOINT_URL is honoured
  gcp-sm:projects/P/secrets/S/versions/V
                             Secret Manager `:access` with the machine's service account token
                             (GCE metadata server); MDEPLOY_SECRETMANAGER_ENDPOINT overrides the
                             API root; a regional secret (.../locations/L/...) uses its endpoint
  azure-kv:https://V.vault.azure.net/secrets/N[/VER]  or  azure-kv:V/N[/VER]
                             Key Vault REST (api-version 7.4) with a managed identity token:
                             IDENTITY_ENDPOINT + IDENTITY_HEADER (App Service style), else
                             MSI_ENDPOINT + MSI_SECRET (what Azure ML online deployments get),
                             else IMDS (MDEPLOY_AZURE_IMDS_ENDPOINT overrides its root);
                             AZURE_CLIENT_ID picks a user-assigned identity;
                             MDEPLOY_KEYVAULT_ENDPOINT overrides the vault root (tests)
  file:<path>                the file's UTF-8 text
`env:` (read by `mdeploy up` on the deployer's machine) and `k8s:` (injected by Kubernetes
itself) never reach the container and are refused. Every value is trimmed by the rule the
targets use for env:/file: (mdeploy/targets/_secrets.py, copied here because the image has no
targets): surrounding whitespace is dropped, and an empty value counts as missing, so the
variable is left unset. A variable that is already set and not empty keeps its value and its
reference is not read: an operator's explicit value, or one the platform injected, wins.
Everything is resolved before anything is set; values are never printed, and errors name the
variable and the reference kind only. Transient failures (HTTP 429/5xx, refused or reset
connections: metadata servers can lag at container start) are retried a few times within
about four seconds. MDEPLOY_SECRET_REFS is removed from the environment CMD gets.

Exit codes: 0 ok, 1 download or secret failed, 2 bad input, 3 missing dependency, 64 no model
(or an unsupported MDEPLOY_MODEL_SOURCE), 126/127 CMD not executable / not found.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

_CHUNK = 8 * 1024 * 1024
_TIMEOUT_S = 60
_WORKERS = 8


class BootError(Exception):
    """A failure with an exit code and a message safe to print."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --- where the model is -------------------------------------------------------------------

SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
NO_MODEL = 64  # exit code of a start with no model to load (as entrypoint.sh had it)
_CONFIG_DEPTH = 3  # config.json is looked for in the tree and two folder levels below it
_HUB = "hf://"
_DOWNLOADED = ("s3://", "gs://")


def find_model(
    environ: Mapping[str, str],
    *,
    platform: str | None = None,
    sagemaker_dir: Path | None = None,
    download: Callable[[str], Path] | None = None,
) -> tuple[str, str]:
    """
    (where, model): the path, URI or Hub id the engine loads, and which rule found it.

    `platform` None looks at every cloud's location, as the image start does; a platform
    name (the adapter's "sagemaker", "vertex", "azureml", "plain") looks at that cloud's
    location only. `download(uri)` fetches gs:// and s3:// trees and returns the folder; the
    adapter passes none, and a URI then goes to the engine as is.
    """
    sagemaker = sagemaker_dir or Path(
        environ.get("MDEPLOY_SAGEMAKER_MODEL_DIR") or SAGEMAKER_MODEL_DIR
    )

    def on(name: str) -> bool:
        return platform is None or platform == name

    if environ.get("MDEPLOY_MODEL"):
        return "explicit", environ["MDEPLOY_MODEL"]
    if on("vertex") and environ.get("AIP_STORAGE_URI"):
        uri = environ["AIP_STORAGE_URI"]
        return "vertex", str(model_root(download(uri))) if download else uri
    azure = environ.get("AZUREML_MODEL_DIR", "")
    if on("azureml") and azure and _has_files(Path(azure)):
        return "azureml", str(model_root(Path(azure)))
    if on("sagemaker") and _has_files(sagemaker):
        return "sagemaker", str(model_root(sagemaker))
    if environ.get("MDEPLOY_MODEL_SOURCE"):
        return "source", _from_source(environ["MDEPLOY_MODEL_SOURCE"], download)
    if environ.get("MDEPLOY_MODEL_ID"):  # model.source is optional in the spec
        return "hub", environ["MDEPLOY_MODEL_ID"]
    where = f" to load on {platform}" if platform else ""
    raise BootError(
        f"no model{where}: set MDEPLOY_MODEL_SOURCE (hf://, s3://, gs:// or a mounted path),"
        " MDEPLOY_MODEL_ID or MDEPLOY_MODEL, or run on SageMaker, Vertex AI or Azure ML",
        NO_MODEL,
    )


def _from_source(source: str, download: Callable[[str], Path] | None) -> str:
    if source.startswith(_HUB):
        return source[len(_HUB) :]
    if source.startswith(_DOWNLOADED):
        return str(model_root(download(source))) if download else source
    if "://" in source:
        raise BootError(
            "MDEPLOY_MODEL_SOURCE: unsupported scheme; use hf://, s3://, gs:// or a path",
            NO_MODEL,
        )
    return str(model_root(Path(source)))


def model_root(tree: Path) -> Path:
    """The shallowest folder under `tree` (itself included) holding config.json, else `tree`.

    Within one level the first path in sorted order wins, so a tokenizer folder with its own
    config.json deeper down never shadows the model.
    """
    level = [tree]
    for _ in range(_CONFIG_DEPTH):
        hits = sorted(str(d / "config.json") for d in level if (d / "config.json").is_file())
        if hits:
            return Path(hits[0]).parent
        level = sorted(sub for d in level for sub in _subfolders(d))
    return tree


def _subfolders(directory: Path) -> list[Path]:
    """Real sub-folders (symlinked ones are not followed, as `find` does not)."""
    try:
        return [e for e in directory.iterdir() if e.is_dir() and not e.is_symlink()]
    except OSError:
        return []


def _has_files(directory: Path) -> bool:
    try:
        return directory.is_dir() and any(directory.iterdir())
    except OSError:
        return False


# --- engine flags -----------------------------------------------------------------------


def json_list(environ: Mapping[str, str], name: str) -> list[str] | None:
    """The JSON list of strings in variable `name`; None when unset or blank."""
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise BootError(f"{name} is not JSON (expected a list of strings)", 2) from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BootError(f"{name} must be a JSON list of strings", 2)
    return value


def engine_args(model: str | None, environ: Mapping[str, str]) -> list[str]:
    """
    The engine flags: `--model` (unless the plan names one), the plan's (MDEPLOY_ENGINE_ARGS),
    then what the environment adds.

    `model` None adds no `--model` (the plan names one). Idempotent: run again on its own
    output (the adapter does, after the image start) it adds nothing.
    """
    args = json_list(environ, "MDEPLOY_ENGINE_ARGS") or []
    present = {a.split("=", 1)[0] for a in args if a.startswith("--")}

    def add(flag: str, *value: str) -> None:
        if flag not in present:
            args.extend([flag, *value])
            present.add(flag)

    if model is not None and "--model" not in present:
        args[:0] = ["--model", model]  # first, as the owned engine always had it
        present.add("--model")
    loaded = _flag_value(args, "--model")
    revision = environ.get("MDEPLOY_MODEL_REVISION", "")
    if revision and loaded and "://" not in loaded and not os.path.isdir(loaded):
        add("--revision", revision)
    if environ.get("MDEPLOY_SERVED_MODEL_NAME"):
        add("--served-model-name", environ["MDEPLOY_SERVED_MODEL_NAME"])
    for name in sorted(k for k in environ if k.startswith("SM_VLLM_")):
        flag = "--" + name[len("SM_VLLM_") :].lower().replace("_", "-")
        value = environ[name]
        if value.lower() == "false":
            continue
        if value.lower() in ("", "true"):
            add(flag)
        else:
            add(flag, value)
    return args


def _flag_value(args: list[str], flag: str) -> str | None:
    """The value of `flag` in `args` (`--flag v` or `--flag=v`), the last one winning."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
    return value


# --- downloads --------------------------------------------------------------------------


def fetch(uri: str, dest: Path) -> tuple[int, int]:
    """Download every object under `uri` into `dest`; return (files, bytes)."""
    parsed = urllib.parse.urlparse(uri)
    bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
    if not bucket:
        raise BootError(f"{uri}: no bucket", 2)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if parsed.scheme == "gs":
        return _fetch_gcs(bucket, prefix, dest)
    if parsed.scheme == "s3":
        return _fetch_s3(bucket, prefix, dest)
    raise BootError(f"{uri}: only gs:// and s3:// are downloaded here", 2)


def _target(dest: Path, prefix: str, name: str) -> Path | None:
    """Local path for object `name`, or None for folder markers; refuses to leave `dest`."""
    rel = name[len(prefix) :]
    if not rel or rel.endswith("/"):
        return None
    path = (dest / rel).resolve()
    if not path.is_relative_to(dest.resolve()):
        raise BootError(f"object {name!r} would be written outside {dest}", 1)
    return path


def _download_all(
    jobs: list[tuple[str, Path, int]], get: Callable[[str, Path], None]
) -> tuple[int, int]:
    def one(job: tuple[str, Path, int]) -> int:
        key, path, size = job
        if path.is_file() and path.stat().st_size == size:
            return size  # left by an earlier start of the same container
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        get(key, part)
        part.replace(path)
        return size

    if not jobs:
        raise BootError("no objects found under that prefix", 1)
    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(jobs))) as pool:
        sizes = list(pool.map(one, jobs))
    return len(sizes), sum(sizes)


def _fetch_gcs(bucket: str, prefix: str, dest: Path) -> tuple[int, int]:
    token = _gce_token()
    root = os.environ.get("MDEPLOY_GCS_ENDPOINT", "https://storage.googleapis.com").rstrip("/")
    base = f"{root}/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o"
    jobs: list[tuple[str, Path, int]] = []
    page = ""
    while True:
        query = {"prefix": prefix, "fields": "items(name,size),nextPageToken"}
        if page:
            query["pageToken"] = page
        listing = json.loads(_http_get(f"{base}?{urllib.parse.urlencode(query)}", token).read())
        for item in listing.get("items", []):
            path = _target(dest, prefix, item["name"])
            if path is not None:
                jobs.append((item["name"], path, int(item.get("size", 0))))
        page = listing.get("nextPageToken", "")
        if not page:
            break

    def get(name: str, part: Path) -> None:
        url = f"{base}/{urllib.parse.quote(name, safe='')}?alt=media"
        with _http_get(url, token) as reply, part.open("wb") as out:
            while chunk := reply.read(_CHUNK):
                out.write(chunk)

    return _download_all(jobs, get)


def _gce_token() -> str:
    """The machine's service account token (Vertex AI, GCE, GKE metadata server)."""
    host = os.environ.get("GCE_METADATA_HOST", "metadata.google.internal")
    url = f"http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
    what = "access token from the GCE metadata server"
    reply = _get_json(url, {"Metadata-Flavor": "Google"}, what, local=True)
    return _text_field(reply, "access_token", what=what)


def _http_get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        return urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise BootError(f"GET {url.split('?')[0]} failed: HTTP {exc.code}") from None
    except OSError as exc:
        raise BootError(f"GET {url.split('?')[0]} failed: {exc}") from None


def _fetch_s3(bucket: str, prefix: str, dest: Path) -> tuple[int, int]:
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise BootError("s3:// needs boto3 (the vLLM image ships it)", 3) from None
    client = boto3.client("s3")
    jobs: list[tuple[str, Path, int]] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                path = _target(dest, prefix, item["Key"])
                if path is not None:
                    jobs.append((item["Key"], path, int(item["Size"])))
        return _download_all(jobs, lambda key, part: client.download_file(bucket, key, str(part)))
    except (BotoCoreError, ClientError) as exc:
        raise BootError(f"s3://{bucket}/{prefix}: {exc}") from None


# --- HTTP with retries --------------------------------------------------------------------

_RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0)  # five tries within about four seconds of waiting
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_SECRET_TIMEOUT_S = 10


class _Transient(Exception):
    """A failure worth another try (the message is safe to print)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Bearer tokens and identity secrets are never sent on to another address."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs  # Unused: a redirect surfaces as an HTTP 3xx error.


_OPENER = urllib.request.build_opener(_NoRedirect())
# Link-local metadata and identity endpoints must not go through an egress proxy.
_LOCAL_OPENER = urllib.request.build_opener(_NoRedirect(), urllib.request.ProxyHandler({}))


def _retry(call: Callable[[], Any], what: str) -> Any:
    """`call()`, tried again after `_Transient` failures; the last one becomes a BootError."""
    for attempt, delay in enumerate((*_RETRY_DELAYS_S, None), start=1):
        try:
            return call()
        except _Transient as exc:
            if delay is None:
                raise BootError(f"{what}: {exc} (gave up after {attempt} tries)") from None
            time.sleep(delay)
    raise AssertionError("unreachable")


def _get_json(
    url: str,
    headers: dict[str, str],
    what: str,
    *,
    local: bool = False,
    retry_status: frozenset[int] = _RETRY_STATUS,
) -> Any:
    """GET `url` and parse its JSON answer. Errors name `what` and a status, never a body."""
    opener = _LOCAL_OPENER if local else _OPENER

    def once() -> Any:
        request = urllib.request.Request(url, headers=headers)
        try:
            with opener.open(request, timeout=_SECRET_TIMEOUT_S) as reply:
                body = reply.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in retry_status:
                raise _Transient(f"HTTP {exc.code}") from None
            raise BootError(f"{what}: HTTP {exc.code}") from None
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, cut
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise _Transient(str(reason) or type(reason).__name__) from None
        try:
            return json.loads(body)
        except ValueError:
            raise BootError(f"{what}: the answer is not JSON") from None

    return _retry(once, what)


def _text_field(reply: Any, *path: str, what: str) -> str:
    """reply[path[0]][path[1]]... as a non-empty string, or a BootError naming the field."""
    value = reply
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, str) or not value:
        raise BootError(f"{what}: the answer has no {'.'.join(path)}")
    return value


# --- secrets ------------------------------------------------------------------------------

SECRET_REFS = "MDEPLOY_SECRET_REFS"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GCP_SECRET = re.compile(
    r"^projects/[^/]+/(?:locations/(?P<location>[a-z0-9-]+)/)?secrets/[^/]+(?:/versions/[^/]+)?$"
)
# Key Vault DNS suffix -> the token audience, per cloud; a token goes to these hosts only.
_VAULT_SUFFIXES = (
    "vault.azure.net",
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
    "vault.microsoftazure.de",
)
_KEYVAULT_API = "7.4"
_VAULT_NAME = re.compile(r"^[A-Za-z0-9-]{3,24}$")
_KV_PART = re.compile(r"^[A-Za-z0-9-]{1,127}$")


def parse_secret_refs(raw: str) -> dict[str, str]:
    """MDEPLOY_SECRET_REFS as {ENV_NAME: reference}; a malformed one is a BootError (2)."""
    if not raw.strip():
        return {}
    try:
        refs = json.loads(raw)
    except ValueError:
        raise BootError(f"{SECRET_REFS} is not JSON (an object NAME -> reference)", 2) from None
    if not isinstance(refs, dict):
        raise BootError(f"{SECRET_REFS} must be a JSON object NAME -> reference", 2)
    for name, ref in refs.items():
        if not _ENV_NAME.match(name) or name == SECRET_REFS:
            raise BootError(f"{SECRET_REFS}: {name!r} is not a usable variable name", 2)
        if not isinstance(ref, str) or ":" not in ref:
            raise BootError(f"{SECRET_REFS}: {name} is not a KIND:TARGET reference", 2)
    return refs


def resolve_secrets(environ: dict[str, str]) -> dict[str, str]:
    """
    The values of the references in MDEPLOY_SECRET_REFS, by variable name.

    A variable already set (non-empty) in `environ` is left out: its value wins and its
    reference is not read. Nothing is returned until every reference is resolved.
    """
    refs = parse_secret_refs(environ.get(SECRET_REFS, ""))
    tokens: dict[str, str] = {}  # one token per audience for all references
    values: dict[str, str] = {}
    for name in sorted(refs):
        kind, _, target = refs[name].partition(":")
        if environ.get(name):
            print(f"boot: {name} is already set; its {kind}: reference is unused", file=sys.stderr)
            continue
        try:
            value = _resolve_one(kind, target, tokens)
        except BootError as exc:
            raise BootError(f"secret {name} ({kind}): {exc}", exc.code) from None
        if "\0" in value:
            raise BootError(f"secret {name} ({kind}): the value holds a NUL byte", 1)
        cleaned = clean_secret(value)
        if cleaned is None:
            print(f"boot: {name}: its {kind}: reference is empty; left unset", file=sys.stderr)
            continue
        values[name] = cleaned
        print(f"boot: {name} set from its {kind}: reference", file=sys.stderr)
    return values


def clean_secret(value: str | None) -> str | None:
    """
    The trimming rule of mdeploy/targets/_secrets.py (`read_local_secret`), copied because
    the image carries no targets: surrounding whitespace is dropped (a token file written by
    `echo`, a secret created from such a file) and an empty value counts as missing (None).
    tests/image/test_boot_secrets.py checks that both give the same answers.
    """
    value = (value or "").strip()
    return value or None


def _resolve_one(kind: str, target: str, tokens: dict[str, str]) -> str:
    if kind == "aws-sm":
        return _aws_secret(target)
    if kind == "gcp-sm":
        return _gcp_secret(target, tokens)
    if kind == "azure-kv":
        return _azure_secret(target, tokens)
    if kind == "file":
        return _file_secret(target)
    if kind == "env":
        raise BootError("env: references are read by `mdeploy up`, never in the container", 2)
    if kind == "k8s":
        raise BootError("k8s: references are injected by Kubernetes (secretKeyRef), not here", 2)
    raise BootError("unknown reference kind (aws-sm:, gcp-sm:, azure-kv: or file:)", 2)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BootError("the value is not UTF-8 text", 1) from None


def _file_secret(path: str) -> str:
    """The file's text, read as the targets read a file: secret (UTF-8, universal newlines)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BootError("the value is not UTF-8 text", 1) from None
    except OSError as exc:
        raise BootError(f"cannot read the file ({exc.strerror or type(exc).__name__})") from None


def _aws_secret(target: str) -> str:
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoRegionError,
            ReadTimeoutError,
        )
    except ImportError:
        raise BootError("aws-sm: references need boto3 (the vLLM image ships it)", 3) from None
    region = None
    if target.startswith("arn:"):
        parts = target.split(":", 6)
        if len(parts) != 7 or parts[2] != "secretsmanager" or not parts[3]:
            raise BootError("not a Secrets Manager ARN", 2)
        region = parts[3]
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10)
    throttled = {"Throttling", "ThrottlingException", "TooManyRequestsException"}

    def once() -> str:
        try:
            client = boto3.session.Session().client(
                "secretsmanager", region_name=region, config=config
            )
            reply = client.get_secret_value(SecretId=target)
        except NoRegionError:
            raise BootError("no AWS region for a secret name: give the full ARN", 2) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or code in throttled:
                raise _Transient(f"GetSecretValue: {code}") from None
            raise BootError(f"GetSecretValue: {code}") from None
        except (
            EndpointConnectionError,
            ConnectionClosedError,
            ConnectTimeoutError,
            ReadTimeoutError,
        ) as exc:
            raise _Transient(f"GetSecretValue: {type(exc).__name__}") from None
        except BotoCoreError as exc:  # no credentials, bad config: another try will not help
            raise BootError(f"GetSecretValue: {type(exc).__name__}") from None
        if isinstance(reply.get("SecretString"), str):
            return reply["SecretString"]
        if isinstance(reply.get("SecretBinary"), bytes):
            return _decode(reply["SecretBinary"])
        raise BootError("the secret has no value")

    return _retry(once, "Secrets Manager")


def _gcp_secret(target: str, tokens: dict[str, str]) -> str:
    match = _GCP_SECRET.match(target)
    if not match:
        raise BootError("expected projects/P/secrets/S/versions/V", 2)
    name = target if "/versions/" in target else f"{target}/versions/latest"
    root = os.environ.get("MDEPLOY_SECRETMANAGER_ENDPOINT", "").rstrip("/")
    if not root:
        location = match.group("location")
        host = f"secretmanager.{location}.rep.googleapis.com" if location else None
        root = f"https://{host or 'secretmanager.googleapis.com'}"
    if "gcp" not in tokens:
        tokens["gcp"] = _gce_token()
    url = f"{root}/v1/{urllib.parse.quote(name, safe='/')}:access"
    reply = _get_json(url, {"Authorization": f"Bearer {tokens['gcp']}"}, "Secret Manager")
    data = _text_field(reply, "payload", "data", what="Secret Manager")
    try:  # proto3 JSON bytes: standard base64; URL-safe and unpadded are accepted as well
        raw = base64.b64decode(data.replace("-", "+").replace("_", "/") + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        raise BootError("payload.data is not base64") from None
    return _decode(raw)


def _azure_secret(target: str, tokens: dict[str, str]) -> str:
    if target.startswith(("https://", "http://")):
        url = urllib.parse.urlparse(target)
        host = (url.hostname or "").lower()
        parts = url.path.strip("/").split("/")
        suffix = next((s for s in _VAULT_SUFFIXES if host.endswith("." + s)), None)
        plain = url.netloc.lower() == host and not (url.query or url.fragment)
        if url.scheme != "https" or suffix is None or not plain or len(parts) not in (2, 3):
            raise BootError("expected https://VAULT.vault.azure.net/secrets/NAME[/VERSION]", 2)
        if parts[0] != "secrets":
            raise BootError("expected https://VAULT.vault.azure.net/secrets/NAME[/VERSION]", 2)
        name, version = parts[1], parts[2] if len(parts) == 3 else ""
    else:
        vault, _, rest = target.partition("/")
        name, _, version = rest.partition("/")
        if not _VAULT_NAME.match(vault):
            raise BootError("expected VAULT/NAME[/VERSION]", 2)
        host, suffix = f"{vault.lower()}.vault.azure.net", "vault.azure.net"
    if not _KV_PART.match(name) or (version and not _KV_PART.match(version)):
        raise BootError("bad secret name or version", 2)
    resource = f"https://{suffix}"
    if resource not in tokens:
        tokens[resource] = _azure_token(resource)
    root = os.environ.get("MDEPLOY_KEYVAULT_ENDPOINT", "").rstrip("/") or f"https://{host}"
    path = f"/secrets/{name}" + (f"/{version}" if version else "")
    query = urllib.parse.urlencode({"api-version": _KEYVAULT_API})
    headers = {"Authorization": f"Bearer {tokens[resource]}"}
    reply = _get_json(f"{root}{path}?{query}", headers, "Key Vault")
    return _text_field(reply, "value", what="Key Vault")


def _azure_token(resource: str) -> str:
    """A managed identity token for `resource`, from what the platform exposes."""
    env = os.environ
    client_id = env.get("AZURE_CLIENT_ID", "")
    query = {"resource": resource}
    if env.get("IDENTITY_ENDPOINT") and env.get("IDENTITY_HEADER"):
        # App Service style (App Service, Functions, Container Apps; newer platforms).
        base, what = env["IDENTITY_ENDPOINT"], "managed identity token (IDENTITY_ENDPOINT)"
        query["api-version"] = "2019-08-01"
        if client_id:
            query["client_id"] = client_id
        headers = {"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]}
        retry_status = _RETRY_STATUS
    elif env.get("MSI_ENDPOINT") and env.get("MSI_SECRET"):
        # Azure ML online deployments and compute: the `secret` header, api-version 2017-09-01;
        # DEFAULT_IDENTITY_CLIENT_ID names the compute's identity where the platform sets it.
        base, what = env["MSI_ENDPOINT"], "managed identity token (MSI_ENDPOINT)"
        query["api-version"] = "2017-09-01"
        client_id = client_id or env.get("DEFAULT_IDENTITY_CLIENT_ID", "")
        if client_id:
            query["clientid"] = client_id
        headers = {"secret": env["MSI_SECRET"], "Metadata": "true"}
        retry_status = _RETRY_STATUS
    else:
        root = env.get("MDEPLOY_AZURE_IMDS_ENDPOINT", "http://169.254.169.254").rstrip("/")
        base, what = f"{root}/metadata/identity/oauth2/token", "managed identity token (IMDS)"
        query["api-version"] = "2018-02-01"
        if client_id:
            query["client_id"] = client_id
        headers = {"Metadata": "true"}
        retry_status = _RETRY_STATUS | {404, 410}  # IMDS answers these while it starts
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}{urllib.parse.urlencode(query)}"
    reply = _get_json(url, headers, what, local=True, retry_status=retry_status)
    return _text_field(reply, "access_token", what=what)


def exec_with_secrets(command: list[str]) -> None:
    """Resolve the secret references into os.environ, then become `command` (never returns)."""
    values = resolve_secrets(dict(os.environ))
    os.environ.update(values)
    os.environ.pop(SECRET_REFS, None)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        raise BootError(f"cannot run {command[0]}: {exc.strerror or exc}", code) from None


# --- command line -------------------------------------------------------------------------

ADAPTER = ("python3", "-m", "mdeploy.serve")
_USAGE = (
    "usage: boot start [serve] [ARG...] | boot fetch URI DEST | boot engine-args --model MODEL"
    " | boot exec -- CMD [ARG...]"
)


def start(argv: list[str]) -> None:
    """The image start: find (or fetch) the weights, set the engine flags, become the adapter."""
    if argv[:1] == ["serve"]:  # SageMaker runs `docker run IMAGE serve`
        argv = argv[1:]
    environ = dict(os.environ)
    weights = Path(environ.get("MDEPLOY_WEIGHTS_DIR") or Path.home() / "weights")
    where, model = find_model(environ, download=partial(_fetch_logged, dest=weights))
    print(f"boot: model ({where}): {model}", file=sys.stderr)
    os.environ["MDEPLOY_ENGINE_ARGS"] = json.dumps(engine_args(model, environ))
    exec_with_secrets([*ADAPTER, *argv])


def _fetch_logged(uri: str, dest: Path) -> Path:
    started = time.monotonic()
    files, size = fetch(uri, dest)
    took = time.monotonic() - started
    print(f"boot: fetched {files} files, {size / 2**20:.1f} MiB in {took:.1f} s", file=sys.stderr)
    return dest


def main(argv: list[str]) -> int:
    """Run one sub-command; print its result on stdout and any error on stderr."""
    try:
        if argv[:1] == ["start"]:
            start(argv[1:])
        if len(argv) == 3 and argv[0] == "fetch":
            print(_fetch_logged(argv[1], Path(argv[2])))
            return 0
        if len(argv) == 3 and argv[0] == "engine-args" and argv[1] == "--model":
            print(json.dumps(engine_args(argv[2], dict(os.environ))))
            return 0
        command = argv[2:] if argv[:2] == ["exec", "--"] else argv[1:]
        if argv[:1] == ["exec"] and command:
            exec_with_secrets(command)
        raise BootError(_USAGE, 2)
    except BootError as exc:
        print(f"boot: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
