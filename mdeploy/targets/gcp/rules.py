"""
The Google Vertex AI rules: names, labels, accelerators, project discovery. Offline only.

Everything here is plain Python (no pulumi, no google SDK at import time), so
`get_target("gcp")` costs nothing and the naming rules can be checked without a cloud. The
Pulumi resources live in `component.py`, the model upload/deploy in `vertex_model.py`, the
day-2 REST calls in `ops.py`; each is imported lazily by the methods here.

Auth: Vertex AI endpoints always authenticate callers with Google IAM (an OAuth access token
of a principal holding `aiplatform.endpoints.predict`). `serving.auth: key` and `iam` are both
served that way; `none` cannot be honoured.

Stack config (`pulumi config set mdeploy:<key>`): every key optional, declared, documented and
checked by `settings.GcpSettings` (an unknown `mdeploy:*` key is refused).
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mdeploy.errors import InputError
from mdeploy.target_names import secret_ref_prefixes
from mdeploy.targets.base import EndpointArgs, unloadable_source
from mdeploy.targets.gcp.settings import GcpSettings

if TYPE_CHECKING:
    from mdeploy.spec.models import Deployment

__all__ = [
    "SUPPORTED_REFS",
    "GcpSettings",
    "accelerator_type",
    "adc_source",
    "endpoint_id",
    "gcp_labels",
    "image_name",
    "project_from_env",
    "repository_id",
    "secret_id",
    "service_account_id",
    "unsupported",
]

# Service account ids: 6–30 chars, [a-z][-a-z0-9]*[a-z0-9] (iam.serviceAccounts.create).
SA_ID_MAX = 30
# Artifact Registry repository ids and GCP label keys/values: at most 63 characters.
NAME_MAX = 63
LABELS_MAX = 64
# The planner's GPU names → Vertex AcceleratorType (aiplatform_v1 AcceleratorType enum); used
# only when the catalog offer does not carry `extra["accelerator_type"]` itself.
_ACCELERATORS = {
    "T4": "NVIDIA_TESLA_T4",
    "V100": "NVIDIA_TESLA_V100",
    "P100": "NVIDIA_TESLA_P100",
    "A100": "NVIDIA_TESLA_A100",
    "A100-40GB": "NVIDIA_TESLA_A100",
    "A100-80GB": "NVIDIA_A100_80GB",
    "L4": "NVIDIA_L4",
    "H100": "NVIDIA_H100_80GB",
    "H100-MEGA": "NVIDIA_H100_MEGA_80GB",
    "H200": "NVIDIA_H200_141GB",
    "B200": "NVIDIA_B200",
}
_LABEL_BAD = re.compile(r"[^a-z0-9_-]+")
_ID_BAD = re.compile(r"[^a-z0-9-]+")
# What serving.secrets may reference: the generic forms and the ones target.py declares.
SUPPORTED_REFS = ("env:", "file:", *secret_ref_prefixes("gcp"))
# Callers send a Google OAuth access token as the bearer (Vertex AI authentication), which is
# where vLLM looks for its API key, so an engine key would make every call answer 401.
VLLM_API_KEY_REASON = (
    "Vertex AI authenticates every request itself: callers send a Google OAuth token as the "
    "bearer, which vLLM would compare with VLLM_API_KEY and answer 401; remove VLLM_API_KEY "
    "from serving.secrets and grant roles/aiplatform.user to the callers instead"
)


def _fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters; a cut name ends in a hash so it stays unique."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return text[: limit - 7].rstrip("-_") + "-" + digest


def _slug(text: str) -> str:
    return _ID_BAD.sub("-", text.lower()).strip("-")


def repository_id(args: EndpointArgs) -> str:
    """Artifact Registry repository created for one deployment and environment."""
    return _fit(_slug(f"mdeploy-{args.name}-{args.env}"), NAME_MAX)


def service_account_id(args: EndpointArgs) -> str:
    """Runtime service account id: `md-<name>-<env>`, hashed down to 30 characters."""
    return _fit(_slug(f"md-{args.name}-{args.env}"), SA_ID_MAX)


def secret_id(args: EndpointArgs, env_name: str) -> str:
    """Secret Manager id for a value mdeploy uploads (env: and file: references)."""
    return _fit(_slug(f"mdeploy-{args.name}-{args.env}-{env_name.replace('_', '-')}"), 255)


def endpoint_id(*parts: object) -> str:
    """
    A numeric Vertex endpoint id (10 digits, no leading zero) derived from `parts`.

    Vertex requires the caller to choose it. Deriving it from everything that forces a new
    endpoint (project, region, name, env, network, dedicated DNS, CMEK) makes a replacement
    get a fresh id, so Pulumi can create the new endpoint before deleting the old one.
    """
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return str(1_000_000_000 + int(digest, 16) % 9_000_000_000)


def image_name(image: str) -> str:
    """Last path component of an image reference, without tag or digest."""
    path = image.partition("@")[0]
    last = path.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def gcp_labels(labels: Mapping[str, str], **extra: str) -> dict[str, str]:
    """
    Labels rewritten to GCP rules: lowercase [a-z0-9_-], at most 63 characters, keys start
    with a letter, at most 64 labels. `extra` (underscores become dashes) wins on clashes.
    """
    merged = {**labels, **{k.replace("_", "-"): v for k, v in extra.items()}}
    out: dict[str, str] = {}
    for key, value in merged.items():
        k = _LABEL_BAD.sub("-", key.lower()).strip("-_")
        if not k or not k[0].isalpha():
            k = "l-" + k
        out[_fit(k, NAME_MAX)] = _fit(_LABEL_BAD.sub("-", str(value).lower()), NAME_MAX)
    return dict(list(out.items())[:LABELS_MAX])


def accelerator_type(args: EndpointArgs) -> str:
    """The Vertex AcceleratorType for the offer: the catalog's value, else from the GPU name."""
    explicit = args.extra.get("accelerator_type")
    if explicit:
        return str(explicit)
    try:
        return _ACCELERATORS[args.gpu.upper()]
    except KeyError:
        raise InputError(
            f"no Vertex accelerator type known for GPU {args.gpu!r}",
            hint="add accelerator_type to the catalog offer (e.g. NVIDIA_L4)",
        ) from None


def _gcloud_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")


def _gcloud_project(env: Mapping[str, str]) -> str | None:
    """The `core/project` of gcloud's active configuration, read from its files."""
    base = _gcloud_dir(env)
    try:
        active = (base / "active_config").read_text().strip() or "default"
    except OSError:
        active = "default"
    active = env.get("CLOUDSDK_ACTIVE_CONFIG_NAME") or active
    parser = configparser.RawConfigParser()
    try:
        parser.read(base / "configurations" / f"config_{active}")
    except (configparser.Error, OSError):
        return None
    return parser.get("core", "project", fallback=None) or None


def project_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The project the environment points at: GOOGLE_CLOUD_PROJECT, CLOUDSDK_*, gcloud."""
    env = os.environ if env is None else env
    for var in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GCLOUD_PROJECT"):
        if env.get(var):
            return env[var]
    return _gcloud_project(env)


def adc_source(env: Mapping[str, str]) -> tuple[bool, str]:
    """Where Application Default Credentials would come from, looking at files only."""
    path = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        if Path(path).is_file():
            return True, f"GOOGLE_APPLICATION_CREDENTIALS ({path})"
        return False, f"GOOGLE_APPLICATION_CREDENTIALS points to {path}, which is not a file"
    adc = _gcloud_dir(env) / "application_default_credentials.json"
    if adc.is_file():
        return True, f"gcloud application default credentials ({adc})"
    if env.get("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE"):
        return False, "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE serves gcloud only, not client libraries"
    return False, "no Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS or gcloud)"


def unsupported(spec: Deployment) -> dict[str, str]:
    problems: dict[str, str] = {}
    if spec.serving.auth == "none":
        problems["serving.auth"] = (
            "Vertex AI endpoints always require a Google OAuth token; use auth: iam, "
            "or put a public gateway in front of the endpoint"
        )
    if "VLLM_API_KEY" in spec.serving.secrets:
        problems["serving.secrets.VLLM_API_KEY"] = VLLM_API_KEY_REASON
    for env_name, ref in spec.serving.secrets.items():
        if env_name == "VLLM_API_KEY":
            continue
        if not ref.startswith(SUPPORTED_REFS):
            problems[f"serving.secrets.{env_name}"] = (
                f"{ref.split(':', 1)[0]}: references cannot be read on Vertex AI; "
                "use gcp-sm:<secret>, env:NAME or file:PATH"
            )
    if scheme := unloadable_source(spec, ("hf", "gs")):
        problems["model.source"] = (
            f"{scheme}:// weights are not reachable from Vertex AI; "
            "copy them to Cloud Storage (`gcloud storage cp -r`) and use gs://, or use hf://"
        )
    return problems
