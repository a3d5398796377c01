"""Offline synth: real component code of each target under the recording mock engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mdeploy.deploy.synth import BANNER, MASK, mask_inputs, synth, synth_args
from mdeploy.errors import PolicyError
from mdeploy.plan import make_plan
from mdeploy.spec import load_spec

TARGETS = ("aws", "azure", "gcp", "coreweave")
COMPONENT_TYPE = {
    "aws": "mdeploy:aws:Endpoint",
    "azure": "mdeploy:azure:Endpoint",
    "gcp": "mdeploy:gcp:Endpoint",
    "coreweave": "mdeploy:kubernetes:Endpoint",
}
TOKEN = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9./-]*:[A-Za-z0-9]+$")


@pytest.fixture
def loaded(spec_file: Path, facts, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_TOKEN", facts.canary)
    return load_spec(spec_file)


@pytest.mark.parametrize("target", TARGETS)
def test_graph_contract_for_each_target(loaded, target):
    graph = synth(loaded, target).to_json()
    assert set(graph) == {"target", "image", "resources"}
    assert graph["target"] == ("kubernetes" if target == "coreweave" else target)
    resources = graph["resources"]
    assert resources, "a component declares resources"
    for r in resources:
        assert set(r) == {"urn", "type", "name", "parent", "depends_on", "inputs"}
        assert TOKEN.match(r["type"]) or r["type"].startswith("pulumi:providers:"), r["type"]
        assert r["urn"].startswith(
            f"urn:pulumi:mistral-7b-chat-default-{graph['target']}::mdeploy::"
        )
        assert r["urn"].endswith("::" + r["name"])
    (top,) = [r for r in resources if r["parent"] is None]
    assert top["type"] == COMPONENT_TYPE[target]
    urns = {r["urn"] for r in resources}
    for r in resources:
        assert r["parent"] is None or r["parent"] in urns
        assert set(r["depends_on"]) <= urns | {None}
    json.dumps(graph)  # JSON-safe


@pytest.mark.parametrize("target", TARGETS)
def test_parents_and_dependencies_come_first(loaded, target):
    seen: set[str] = set()
    for r in synth(loaded, target).to_json()["resources"]:
        assert r["parent"] is None or r["parent"] in seen, r["name"]
        assert all(d in seen for d in r["depends_on"]), r["name"]
        seen.add(r["urn"])


def test_same_digest_in_all_four_graphs(facts, loaded):
    graphs = [synth(loaded, t).to_json() for t in TARGETS]
    repositories = set()
    for graph in graphs:
        image = graph["image"]
        assert image.endswith("@" + facts.digest), (graph["target"], image)
        repositories.add(image.split("@")[0])
        # The model/container resources reference exactly that image, never a tag.
        text = json.dumps(graph["resources"])
        assert image in text, graph["target"]
        assert not re.search(r"vllm-adapter:[A-Za-z0-9._-]+\"", text)
    assert len(repositories) >= 3  # each cloud pulls from its own registry
    kube = next(g for g in graphs if g["target"] == "kubernetes")
    assert kube["image"] == facts.image  # no mdeploy:registry configured: pulled as is


def test_registry_lives_in_the_endpoint_region(loaded):
    """SageMaker and Vertex pull only from a registry in the endpoint's own region."""
    for target in ("aws", "gcp"):
        region = make_plan(loaded.spec, targets=[target]).chosen.region
        image = synth(loaded, target).to_json()["image"]
        assert region in image.split("/")[0], (target, region, image)


@pytest.mark.parametrize("target", TARGETS)
def test_secret_values_never_appear(facts, loaded, target):
    text = json.dumps(synth(loaded, target).to_json())
    assert facts.canary not in text
    assert MASK in text


def test_unset_env_secrets_get_a_placeholder_that_is_masked(spec_file, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    graph = synth(load_spec(spec_file), "coreweave").to_json()
    assert "mdeploy-synth-placeholder" not in json.dumps(graph)
    import os

    assert "HF_TOKEN" not in os.environ  # restored after the run


def test_runs_are_independent_and_deterministic(loaded):
    first = synth(loaded, "coreweave").to_json()
    synth(loaded, "gcp")
    again = synth(loaded, "coreweave").to_json()
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    names = [r["name"] for r in first["resources"]]
    assert len(names) == len(set(names))  # no leftovers from the previous program


def test_env_overlay_changes_the_stack_name(facts, spec_file, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", facts.canary)
    spec_file.write_text(
        spec_file.read_text().replace("environments:", "environments:\n  staging: {}")
    )
    graph = synth(load_spec(spec_file, "staging"), "coreweave").to_json()
    assert graph["resources"][0]["urn"].startswith("urn:pulumi:mistral-7b-chat-staging-kubernetes")


def test_nothing_fits_a_target_names_why(spec_file, monkeypatch):
    text = spec_file.read_text().replace("residency: [EU]", "residency: [EU]\n  gpus: [B200]")
    spec_file.write_text(text)
    with pytest.raises(PolicyError, match="no offer of gcp fits"):
        synth(load_spec(spec_file), "gcp")


def test_target_outside_placement_is_an_input_error(spec_file):
    from mdeploy.errors import InputError

    spec_file.write_text(spec_file.read_text().replace("[aws, azure, gcp, coreweave]", "[aws]"))
    with pytest.raises(InputError, match=r"placement\.clouds"):
        synth(load_spec(spec_file), "gcp")


def test_mask_inputs_rules():
    wrapped = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}
    inputs = {
        "stringData": {**wrapped, "value": {"HF_TOKEN": "x", "API": "y"}},
        "password": "hunter2",
        "adminPassword": "hunter2",
        "secretName": "tls-cert",  # names a secret, holds none
        "key": "gpu.nvidia.com/class",  # node-selector key, not a credential
        "env": [{"name": "HF_TOKEN", "value": "leak"}, {"name": "PORT", "value": "8080"}],
        "environment": {"HF_TOKEN": "leak", "MODEL": "m"},
        "port": 8080.0,
        "ratio": 0.5,
    }
    out = mask_inputs(inputs)
    assert out["stringData"] == {"API": MASK, "HF_TOKEN": MASK}
    assert out["password"] == out["adminPassword"] == MASK
    assert out["secretName"] == "tls-cert"
    assert out["key"] == "gpu.nvidia.com/class"
    assert out["env"] == [{"name": "HF_TOKEN", "value": MASK}, {"name": "PORT", "value": "8080"}]
    assert out["environment"] == {"HF_TOKEN": MASK, "MODEL": "m"}
    assert out["port"] == 8080 and isinstance(out["port"], int)
    assert out["ratio"] == 0.5
    assert "hunter2" not in json.dumps(out) and "leak" not in json.dumps(out)


def test_synth_args_accepts_stack_config(loaded):
    resolved = synth(loaded, "coreweave").resolved
    config = {"mdeploy:ingressHost": "llm.example.com", "mdeploy:createNamespace": "false"}
    graph = synth_args("kubernetes", resolved.args, config=config).to_json()
    types = [r["type"] for r in graph["resources"]]
    assert "kubernetes:networking.k8s.io/v1:Ingress" in types
    assert "kubernetes:core/v1:Namespace" not in types


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_json_single_target(facts, cli, spec_file, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", facts.canary)
    result = cli("synth", spec_file, "--target", "gcp", "--json")
    assert result.exit_code == 0, result.stderr
    graph = json.loads(result.stdout)
    assert graph["target"] == "gcp" and graph["image"].endswith(facts.digest)


def test_cli_all_targets_json_and_out(facts, cli, spec_file, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", facts.canary)
    out = tmp_path / "out"
    result = cli("synth", spec_file, "--all-targets", "--json", "--out", out)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [g["target"] for g in doc["targets"]] == ["aws", "azure", "gcp", "kubernetes"]
    assert doc["skipped"] == []
    assert facts.canary not in result.stdout
    for target in ("aws", "azure", "gcp", "kubernetes"):
        assert json.loads((out / f"{target}.json").read_text())["target"] == target
    manifests = sorted((out / "kubernetes").glob("*.yaml"))
    assert manifests[0].name.startswith("01-namespace-")
    assert any("-deployment-" in p.name for p in manifests)


def test_cli_human_output_has_the_banner(facts, cli, spec_file):
    result = cli("synth", spec_file, "--target", "coreweave")
    assert result.exit_code == 0, result.stderr
    flat = " ".join(result.stdout.split())
    assert " ".join(BANNER.split()[:6]) in flat
    assert "kubernetes:apps/v1:Deployment" in result.stdout
    assert facts.digest in flat


def test_cli_bad_target_is_exit_2(cli, spec_file):
    result = cli("synth", spec_file, "--target", "mars")
    assert result.exit_code == 2
    assert "unknown target" in result.stderr


def test_cli_target_and_all_targets_conflict(cli, spec_file):
    result = cli("synth", spec_file, "--target", "aws", "--all-targets")
    assert result.exit_code == 2


def test_unset_image_uses_the_local_build_outside_prod(spec_file, facts):
    from mdeploy.deploy.program import source_image
    from mdeploy.image.build import DEFAULT_TAG

    spec_file.write_text(spec_file.read_text().replace(f"  image: {facts.image}\n", ""))
    assert source_image(load_spec(spec_file)) == DEFAULT_TAG
    with pytest.raises(PolicyError, match=r"serving\.image"):
        source_image(load_spec(spec_file, "prod"))


CANONICAL = "mistralai/Mistral-7B-Instruct-v0.3"


def _strings(value):
    """Every string inside a JSON value."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_an_alias_is_emitted_as_the_canonical_id_on_every_target(cli, spec_file, facts,
                                                                   monkeypatch):  # fmt: skip
    """`model.id: Mistral-7B` sizes fine, but the container must ask the Hub for the real repo."""
    monkeypatch.setenv("HF_TOKEN", facts.canary)
    text = spec_file.read_text().replace(f"id: {CANONICAL}", "id: Mistral-7B")
    spec_file.write_text(re.sub(r"(?m)^\s*source: .*\n", "", text))
    result = cli("synth", spec_file, "--all-targets", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert {g["target"] for g in doc["targets"]} == {"aws", "azure", "gcp", "kubernetes"}
    for graph in doc["targets"]:
        values = list(_strings(graph["resources"]))
        blob = "\n".join(values)
        assert CANONICAL in blob, graph["target"]
        # the alias never reaches the container: not as a value, a flag or inside the env JSON
        assert not re.search(r"(?<![\w/.-])Mistral-7B(?![\w.-])", blob), graph["target"]
        flags = [v for v in values if "--served-model-name" in v]
        assert flags and all(
            f"--served-model-name {CANONICAL}" in f or f'"--served-model-name", "{CANONICAL}"' in f
            for f in flags
        ), flags


def _all_targets(spec_file, workers: int, env: dict | None = None):
    """`synth --all-targets --json` in a fresh process (the CLI forks its workers)."""
    run_env = {**os.environ, **(env or {}), "MDEPLOY_SYNTH_WORKERS": str(workers)}
    code = "from mdeploy.cli.app import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "synth", str(spec_file), "--all-targets", "--json"],
        capture_output=True, text=True, timeout=300, env=run_env,
    )  # fmt: skip


def test_all_targets_in_worker_processes_give_the_same_document(spec_file, facts, monkeypatch):
    """Concurrent synth (forked workers) prints byte for byte what the sequential one does."""
    monkeypatch.setenv("HF_TOKEN", facts.canary)
    text = spec_file.read_text().replace("residency: [EU]", "residency: [EU]\n  gpus: [L4, H100]")
    spec_file.write_text(text)  # some targets offer neither here: skipped, in order
    sequential = _all_targets(spec_file, 1)
    concurrent = _all_targets(spec_file, 4)
    assert sequential.returncode == concurrent.returncode == 0, concurrent.stderr
    assert concurrent.stdout == sequential.stdout
    doc = json.loads(concurrent.stdout)
    assert [g["target"] for g in doc["targets"]] == ["aws", "azure", "gcp"]
    assert [s["target"] for s in doc["skipped"]] == ["kubernetes"]  # no L4/H100 there


def test_an_error_in_a_worker_is_reported_like_in_process(spec_file, tmp_path):
    hook = tmp_path / "sitecustomize.py"  # breaks the gcp component in every process
    hook.write_text(
        "from mdeploy.targets.gcp.target import GcpTarget\n"
        "def broken(self, name, args, opts=None):\n"
        "    raise RuntimeError('boom')\n"
        "GcpTarget.component = broken\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for workers in (1, 3):
        result = _all_targets(spec_file, workers, env)
        assert result.returncode == 1, result.stderr
        assert "the gcp component failed under the mock engine: RuntimeError: boom" in (
            result.stderr
        )
        assert "Traceback" not in result.stderr


def test_fork_is_not_used_in_a_process_that_runs_threads(monkeypatch):
    from mdeploy.deploy import synth as synth_mod

    monkeypatch.setenv("MDEPLOY_SYNTH_WORKERS", "4")
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, daemon=True)
    worker.start()
    try:
        assert synth_mod._workers(4) == 1
    finally:
        stop.set()
        worker.join(timeout=5)
