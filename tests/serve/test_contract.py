"""Platform detection, per-platform contracts and settings: pure functions, no server."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mdeploy.serve as serve
from mdeploy.serve.config import ServeConfigError, load_config
from mdeploy.serve.contract import contract_for, detect, detect_platform

VERTEX_ENV = {
    "AIP_HTTP_PORT": "7080",
    "AIP_HEALTH_ROUTE": "/v1/endpoints/11/deployedModels/22",
    "AIP_PREDICT_ROUTE": "/v1/endpoints/11/deployedModels/22:predict",
    "AIP_MODE": "PREDICTION",
    "AIP_DEPLOYED_MODEL_ID": "22",
    "AIP_ENDPOINT_ID": "11",
}


@pytest.mark.parametrize(
    ("environ", "argv", "platform"),
    [
        (VERTEX_ENV, (), "vertex"),
        ({"AIP_PREDICT_ROUTE": "/p"}, (), "vertex"),
        ({"AZUREML_MODEL_DIR": "/var/azureml-app/azureml-models/m/1"}, (), "azureml"),
        ({}, ("serve",), "sagemaker"),
        ({"SAGEMAKER_BIND_TO_PORT": "9090"}, (), "sagemaker"),
        ({"SM_VLLM_MAX_MODEL_LEN": "4096"}, (), "sagemaker"),
        ({}, (), "plain"),
        ({"HOME": "/root", "PATH": "/usr/bin", "SMTP_HOST": "x"}, (), "plain"),
    ],
)
def test_detect_platform(environ, argv, platform):
    assert detect_platform(environ, argv) == platform
    assert detect(environ, argv).reason  # always says why


def test_platform_variables_outrank_sagemaker_hints():
    # Vertex and Azure set their variables themselves; a `serve` argument could be a habit.
    assert detect_platform({**VERTEX_ENV, "AZUREML_X": "1"}, ["serve"]) == "vertex"
    assert detect_platform({"AZUREML_MODEL_DIR": "/m"}, ["serve"]) == "azureml"


_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=12)


@given(
    other=st.dictionaries(_names, st.text(max_size=5), max_size=6),
    marker=st.sampled_from(["AIP_HTTP_PORT", "AIP_PREDICT_ROUTE", "AIP_HEALTH_ROUTE", "AIP_MODE"]),
)
def test_any_vertex_marker_means_vertex(other, marker):
    assert detect_platform({**other, marker: "8080"}) == "vertex"


@given(other=st.dictionaries(_names, st.text(max_size=5), max_size=6))
def test_no_marker_means_plain(other):
    environ = {
        k: v
        for k, v in other.items()
        if not k.startswith(("AIP_", "AZUREML_", "SM_", "SAGEMAKER_"))
    }
    assert detect_platform(environ) == "plain"


def test_sagemaker_contract():
    c = contract_for("sagemaker", {})
    assert (c.port, c.readiness, c.inference) == (8080, "/ping", "/invocations")
    assert contract_for("sagemaker", {"SAGEMAKER_BIND_TO_PORT": "9090"}).port == 9090


def test_vertex_contract_reads_aip_variables():
    c = contract_for("vertex", VERTEX_ENV)
    assert c.port == 7080
    assert c.readiness == "/v1/endpoints/11/deployedModels/22"
    assert c.inference == "/v1/endpoints/11/deployedModels/22:predict"


def test_vertex_contract_defaults():
    # Without routes, Vertex's documented defaults are built from the endpoint ids...
    ids = {"AIP_ENDPOINT_ID": "5", "AIP_DEPLOYED_MODEL_ID": "6"}
    c = contract_for("vertex", ids)
    assert (c.readiness, c.inference) == (
        "/v1/endpoints/5/deployedModels/6",
        "/v1/endpoints/5/deployedModels/6:predict",
    )
    # ...and without ids (a laptop), simple fallbacks.
    c = contract_for("vertex", {})
    assert (c.port, c.readiness, c.inference) == (8080, "/health", "/predict")


def test_azureml_contract_uses_exported_constants():
    c = contract_for("azureml", {"AZUREML_MODEL_DIR": "/m"})
    assert (c.port, c.liveness, c.readiness, c.inference) == (
        serve.AZUREML_PORT,
        serve.AZUREML_LIVENESS_ROUTE,
        serve.AZUREML_READINESS_ROUTE,
        serve.AZUREML_SCORING_ROUTE,
    )
    assert (c.liveness, c.readiness, c.inference) == ("/live", "/ready", "/score")


def test_plain_contract_has_no_cloud_route():
    c = contract_for("plain", {})
    assert c.inference is None and c.routes() == {"liveness": "/live", "readiness": "/ready"}


@pytest.mark.parametrize("bad", ["http", "0", "70000", "-1"])
def test_bad_port_variable_is_refused(bad):
    with pytest.raises(ValueError, match="AIP_HTTP_PORT"):
        contract_for("vertex", {"AIP_HTTP_PORT": bad})


def test_unknown_platform_is_refused():
    with pytest.raises(ValueError, match="unknown platform"):
        contract_for("heroku", {})  # type: ignore[arg-type]


def test_flags_beat_variables_beat_defaults():
    env = {"MDEPLOY_MAX_BODY_BYTES": "100", "MDEPLOY_ENGINE_URL": "http://10.0.0.1:9000/"}
    config = load_config(env, platform="azureml", port=9999, max_body_bytes=50)
    assert (config.platform, config.port, config.max_body_bytes) == ("azureml", 9999, 50)
    assert config.engine_url == "http://10.0.0.1:9000" and not config.owns_engine
    config = load_config(env)
    assert (config.platform, config.port, config.max_body_bytes) == ("plain", 8080, 100)
    assert config.host == "0.0.0.0"


def test_owned_engine_listens_on_loopback():
    config = load_config({"MDEPLOY_ENGINE_PORT": "8123"})
    assert config.owns_engine and config.engine_url == "http://127.0.0.1:8123"


def test_platform_override_beats_detection():
    assert load_config(VERTEX_ENV, platform="plain").platform == "plain"
    assert load_config({"MDEPLOY_PLATFORM": "sagemaker"}).platform == "sagemaker"
    assert load_config(VERTEX_ENV).port == 7080
    assert load_config(VERTEX_ENV).deployed_model_id == "22"


@pytest.mark.parametrize(
    ("env", "kwargs", "named"),
    [
        ({}, {"platform": "heroku"}, "--platform"),
        ({"MDEPLOY_MAX_BODY_BYTES": "lots"}, {}, "MDEPLOY_MAX_BODY_BYTES"),
        ({"MDEPLOY_ENGINE_PORT": "99999"}, {}, "MDEPLOY_ENGINE_PORT"),
        ({"MDEPLOY_READY_TTL": "-1"}, {}, "MDEPLOY_READY_TTL"),
        ({}, {"port": 70000}, "--port"),
        ({}, {"max_body_bytes": 0}, "--max-body-bytes"),
        ({}, {"grace_seconds": -1.0}, "--grace"),
        ({}, {"engine_url": "https://engine:8000"}, "--engine-url"),
        ({"MDEPLOY_ENGINE_URL": "localhost:8000"}, {}, "MDEPLOY_ENGINE_URL"),
        ({"AIP_HTTP_PORT": "x"}, {}, "AIP_HTTP_PORT"),
    ],
)
def test_bad_settings_name_the_culprit(env, kwargs, named):
    with pytest.raises(ServeConfigError, match=named):
        load_config(env, **kwargs)


def test_package_import_is_light():
    # Deploy-time code reads mdeploy.serve constants: that must not load uvicorn or httpx.
    code = (
        "import sys, mdeploy.serve\n"
        "print(sorted(m for m in ('uvicorn', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
