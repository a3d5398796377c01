"""The adapter's hardening settings: defaults, validation, and the API key kept secret."""

from __future__ import annotations

import pytest

from mdeploy.serve.__main__ import main
from mdeploy.serve.config import ServeConfigError, load_config
from mdeploy.serve.server import summary

KEY = "sk-live-abcdef0123456789"


def test_defaults_are_bounded():
    config = load_config({})
    assert config.api_key is None
    assert config.max_instances == 1024 and config.fanout_connections == 64
    assert config.header_timeout == 10 and config.body_timeout == 60
    assert config.max_connections == 1024 and config.access_log is False


def test_every_limit_is_configurable():
    config = load_config(
        {
            "MDEPLOY_MAX_INSTANCES": "5",
            "MDEPLOY_FANOUT_CONNECTIONS": "3",
            "MDEPLOY_HEADER_TIMEOUT": "2.5",
            "MDEPLOY_BODY_TIMEOUT": "7",
            "MDEPLOY_MAX_CONNECTIONS": "9",
            "MDEPLOY_ACCESS_LOG": "1",
        }
    )
    assert (config.max_instances, config.fanout_connections) == (5, 3)
    assert (config.header_timeout, config.body_timeout, config.max_connections) == (2.5, 7, 9)
    assert config.access_log is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MDEPLOY_MAX_INSTANCES", "0"),
        ("MDEPLOY_MAX_INSTANCES", "lots"),
        ("MDEPLOY_FANOUT_CONNECTIONS", "100000"),
        ("MDEPLOY_HEADER_TIMEOUT", "inf"),
        ("MDEPLOY_HEADER_TIMEOUT", "nan"),
        ("MDEPLOY_BODY_TIMEOUT", "-1"),
        ("MDEPLOY_MAX_CONNECTIONS", "0"),
        ("MDEPLOY_ACCESS_LOG", "maybe"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ServeConfigError, match=name):
        load_config({name: value})


def test_the_key_is_kept_out_of_repr_and_summary():
    config = load_config({"MDEPLOY_API_KEY": f"  {KEY} "})
    assert config.api_key == KEY
    assert KEY not in repr(config)
    lines = "\n".join(summary(config))
    assert KEY not in lines and "Bearer key required" in lines


def test_a_blank_key_means_no_key():
    assert load_config({"MDEPLOY_API_KEY": "  "}).api_key is None


def test_a_malformed_key_is_refused_without_echoing_it(monkeypatch, capsys):
    monkeypatch.setenv("MDEPLOY_API_KEY", "sk-has a space-SECRETPART")
    assert main(["--engine-url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "MDEPLOY_API_KEY" in err and "SECRETPART" not in err


def test_the_engine_key_guards_every_route_when_no_adapter_key_is_set():
    # The Kubernetes target sets VLLM_API_KEY from its generated Secret.
    assert load_config({"VLLM_API_KEY": KEY}).api_key == KEY
    assert load_config({"VLLM_API_KEY": "other", "MDEPLOY_API_KEY": KEY}).api_key == KEY
