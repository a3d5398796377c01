"""
The facts `spec/`, `catalog/` and `plan/` read from the target folders as text (issue 12).

`mdeploy/target_names.py` reads each `targets/<folder>/target.py` without importing it; these
tests prove the text reading says what the imported classes say, and that a new folder's
facts reach the spec format (its own `placement.<key>`) and the planner with no other edit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from targetfolders import joined_target_root

from mdeploy import target_names as names
from mdeploy.targets import all_targets, refresh

# A minimal target that takes the user's own pools under `placement.lab`; its methods are
# never called here (only its text is read), so they do the least the contract allows.
LAB_TARGET = r'''
"""A throwaway cluster target: the user's own pools under placement.lab."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from mdeploy.targets.base import EndpointArgs, Target

class LabTarget(Target):
    name: ClassVar[str] = "lab"
    display_name: ClassVar[str] = "Lab cluster"
    catalog_targets: ClassVar[tuple[str, ...]] = (
        "lab",  # the pools, offered as target "lab"
        "lab-cloud",
    )
    pool_placement: ClassVar[str | None] = "lab"
    replica_unit: ClassVar[Literal["instance", "pods"]] = "pods"
    secret_ref_forms: ClassVar[tuple[str, ...]] = (
        "lab-vault:NAME",  # the lab's vault (a comment with a ")" in it)
        "lab-kv:STORE/KEY",
    )
    secret_ref_patterns: ClassVar[tuple[str, ...]] = (r"lab-vault:[a-z]+(\.v[0-9]+)?",)
    model_source_schemes: ClassVar[tuple[str, ...]] = ("lab",)
    pulumi_plugins: ClassVar[tuple[str, ...]] = ()
    credentials_hint: ClassVar[str] = "nothing to set"
    generic_registry: ClassVar[bool] = False
    python_modules: ClassVar[tuple[str, ...]] = tuple(["pulumi"])

    def component(self, resource_name: str, args: EndpointArgs, opts: Any = None) -> Any:
        raise NotImplementedError

    def registry_repository(self, args: EndpointArgs, stack_config: dict[str, str]) -> str:
        raise NotImplementedError

    def check_credentials(self) -> tuple[bool, str]:
        return True, ""

    def stack_config(self, args: EndpointArgs) -> dict[str, str]:
        return {}


TARGET = LabTarget()
'''


@pytest.fixture
def lab_root(tmp_path: Path) -> Path:
    """A `targets/` root holding only the throwaway `lab/` folder."""
    folder = tmp_path / "targets" / "lab"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "target.py").write_text(textwrap.dedent(LAB_TARGET))
    return tmp_path / "targets"


@pytest.fixture
def lab(lab_root: Path) -> Iterator[str]:
    """The lab folder joined to `mdeploy.targets.__path__` for this test only."""
    with joined_target_root(lab_root, "lab") as name:
        yield name


def test_facts_read_as_text_agree_with_the_imported_classes() -> None:
    facts = {f.folder: f for f in names.target_facts()}
    for target in all_targets():
        read = facts[target.name]
        assert read.catalog_targets == tuple(target.catalog_targets), target.name
        assert read.pool_placement == target.pool_placement, target.name
        assert read.replica_unit == target.replica_unit, target.name
        assert read.instance_label == target.instance_label, target.name
        assert read.secret_ref_forms == target.secret_ref_forms, target.name
        assert read.secret_ref_patterns == target.secret_ref_patterns, target.name
        assert read.model_source_schemes == target.model_source_schemes, target.name
    pods = {
        t
        for target in all_targets()
        if target.replica_unit == "pods"
        for t in target.catalog_targets
    }
    assert names.splittable_targets() == pods
    assert set(names.pool_placements()) == {t.pool_placement for t in all_targets()} - {None}


def test_todays_facts_are_the_values_the_core_used_to_hand_write() -> None:
    """The lists that lived in spec/models.py and plan/topology.py, now derived."""
    assert names.default_clouds() == ("aws", "azure", "gcp", "coreweave")
    assert names.pool_placements() == {"kubernetes": ("coreweave", "kubernetes")}
    assert names.splittable_targets() == {"coreweave", "kubernetes"}
    assert names.instance_labels() == {
        "aws": "SageMaker real-time",
        "azure": "Azure ML managed",
        "gcp": "Vertex AI",
    }


def test_todays_schemes_are_the_ones_spec_used_to_hand_write() -> None:
    """spec/models.py's `_SECRET_REF`, `SECRET_REF_FORMS` and `_MODEL_SOURCE`, now derived."""
    assert names.secret_ref_forms() == (
        "aws-sm:ARN",
        "azure-kv:VAULT/NAME",
        "gcp-sm:NAME",
        "k8s:SECRET/KEY",
    )
    assert names.secret_ref_shapes() == (
        r"aws\-sm:\S+",
        r"azure\-kv:[^\s/]+/\S+",
        r"gcp\-sm:\S+",
        r"k8s:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-._A-Za-z0-9]+",
    )
    assert names.model_source_schemes() == ("s3", "az", "gs")


def test_supported_secret_refs_derive_from_the_declared_forms() -> None:
    """One source: the rules' SUPPORTED tuples are the generic forms plus target.py's."""
    for target in all_targets():
        supported = getattr(target, "supported_secret_refs", None)
        if supported is not None:
            expected = ("env:", "file:", *names.secret_ref_prefixes(target.name))
            assert supported == expected, target.name
    assert names.secret_ref_prefixes("kubernetes") == ("k8s:",)


def test_the_reader_takes_literals_and_nothing_else(lab_root: Path) -> None:
    path = str(lab_root / "lab" / "target.py")
    assert names._declared(path) == ("lab", "lab-cloud")  # spans lines, has a comment
    assert names._declared(path, "pool_placement") == "lab"
    assert names._declared(path, "generic_registry") is False
    assert names._declared(path, "python_modules") is None  # an expression: not read
    assert names._declared(path, "instance_label") is None  # not declared: the default
    assert names._declared(path, "name") == "lab"
    # Parentheses in a comment and inside a string do not cut the tuple short.
    assert names._declared(path, "secret_ref_forms") == ("lab-vault:NAME", "lab-kv:STORE/KEY")
    assert names._declared(path, "secret_ref_patterns") == (r"lab-vault:[a-z]+(\.v[0-9]+)?",)


def test_a_tuple_followed_by_more_code_is_not_a_literal(tmp_path: Path) -> None:
    path = tmp_path / "target.py"
    path.write_text(
        "class T:\n"
        '    a: X = ("x",) + OTHER\n'
        '    b: X = ("y)", f(z))\n'
        "    c: X = (\n        'open'\n"
    )
    assert [names._declared(str(path), name) for name in "abc"] == [None, None, None]


def test_a_new_folder_brings_its_facts(lab: str) -> None:
    assert names.secret_ref_forms()[-2:] == ("lab-vault:NAME", "lab-kv:STORE/KEY")
    assert names.secret_ref_shapes()[-2:] == (
        r"lab-vault:[a-z]+(\.v[0-9]+)?",  # the exact pattern the lab declares
        r"lab\-kv:[^\s/]+/\S+",  # derived from the form
    )
    assert names.model_source_schemes()[-1] == "lab"
    assert names.pool_placements()[lab] == ("lab", "lab-cloud")
    assert {"lab", "lab-cloud"} <= names.splittable_targets()
    assert "lab-cloud" in names.default_clouds() and lab not in names.default_clouds()
    assert lab not in names.instance_labels()
    refresh()  # a cleared cache reads the same folder again
    assert lab in names.pool_placements()


# Run in a fresh interpreter: `Placement` gets its cluster fields when spec/models.py is
# imported, so the folder must be on `mdeploy.targets.__path__` before that.
PROBE = """
import json, sys
import mdeploy.targets
mdeploy.targets.__path__.append(sys.argv[1])
from pathlib import Path
from mdeploy.errors import InputError, SpecError
from mdeploy.plan.pools import pool_offers
from mdeploy.spec import load_spec, schema
from mdeploy.spec.models import Placement

out = {"fields": list(Placement.model_fields), "keys": list(Placement.cluster_keys())}
out["schema"] = schema()["$defs"]["Placement"]["properties"]["lab"]["description"]
loaded = load_spec(Path(sys.argv[2]))
out["clusters"] = sorted(loaded.spec.placement.clusters())
out["offers"] = [(o.target, o.instance_type, o.source) for o in pool_offers(loaded.spec)]
try:
    load_spec(Path(sys.argv[3]))
except SpecError as exc:
    out["no_pools"] = [str(i) for i in exc.issues]
try:
    pool_offers(load_spec(Path(sys.argv[4])).spec)
except InputError as exc:
    out["unknown_gpu"] = exc.message
print(json.dumps(out))
"""

SPEC = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: tiny}
model: {id: acme/tiny-7b}
placement:
  clouds: [lab]
  lab:
    namespace: ml
    pools:
      - {name: big, gpu: H100, gpu_count: 8, gpu_memory_gib: 79.0, country: DE}
"""


def test_a_new_cluster_target_gets_its_own_placement_key(lab_root: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(SPEC)
    no_pools = tmp_path / "no_pools.yaml"
    no_pools.write_text(SPEC.split("  lab:")[0])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        SPEC.replace("gpu: H100", "gpu: NOPE-9").replace(", gpu_memory_gib: 79.0", "")
    )
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(lab_root), str(good), str(no_pools), str(unknown)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["keys"] == ["kubernetes", "lab"] and out["fields"][-2:] == ["kubernetes", "lab"]
    assert out["schema"] == "Cluster settings for lab/lab-cloud."
    assert out["clusters"] == ["lab"]
    assert out["offers"] == [["lab", "big", "spec placement.lab.pools"]]
    assert any("cloud 'lab' needs placement.lab.pools" in issue for issue in out["no_pools"])
    assert out["unknown_gpu"].startswith("placement.lab.pools[big].gpu: ")


# Also a fresh interpreter: spec/models.py builds its secret and source checks at import.
SCHEME_PROBE = """
import json, sys
import mdeploy.targets
if sys.argv[1]:
    mdeploy.targets.__path__.append(sys.argv[1])
from pathlib import Path
from mdeploy.errors import SpecError
from mdeploy.spec import load_spec
from mdeploy.spec.models import SECRET_REF_FORMS

out = {"forms": SECRET_REF_FORMS}
for name in sys.argv[2:]:
    try:
        spec = load_spec(Path(name)).spec
        out[Path(name).stem] = [spec.model.source, spec.serving.secrets]
    except SpecError as exc:
        out[Path(name).stem] = [f"{i.field}: {i.message}" for i in exc.issues]
print(json.dumps(out))
"""

SCHEME_SPEC = """\
apiVersion: mdeploy/v1
kind: Deployment
metadata: {name: tiny}
model: {id: acme/tiny-7b, source: "SOURCE"}
serving:
  secrets: {X: "REF"}
"""


def _probe_schemes(root: str, tmp_path: Path) -> dict[str, object]:
    cases = {
        "vault": ("lab://bucket/m", "lab-vault:abc"),
        "versioned": ("hf://acme/tiny-7b", "lab-vault:abc.v2"),
        "kv": ("hf://acme/tiny-7b", "lab-kv:store/key"),
        "bad_vault": ("hf://acme/tiny-7b", "lab-vault:ABC"),  # the lab's exact pattern
    }
    paths = []
    for stem, (source, ref) in cases.items():
        paths.append(tmp_path / f"{stem}.yaml")
        paths[-1].write_text(SCHEME_SPEC.replace("SOURCE", source).replace("REF", ref))
    run = subprocess.run(
        [sys.executable, "-c", SCHEME_PROBE, root, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_a_new_folder_brings_its_secret_form_and_source_scheme(
    lab_root: Path, tmp_path: Path
) -> None:
    out = _probe_schemes(str(lab_root), tmp_path)
    assert str(out["forms"]).endswith("k8s:SECRET/KEY, lab-vault:NAME, lab-kv:STORE/KEY")
    assert out["vault"] == ["lab://bucket/m", {"X": "lab-vault:abc"}]
    assert out["versioned"] == ["hf://acme/tiny-7b", {"X": "lab-vault:abc.v2"}]
    assert out["kv"] == ["hf://acme/tiny-7b", {"X": "lab-kv:store/key"}]
    (issue,) = out["bad_vault"]
    assert str(issue).startswith("serving.secrets.X: must be a reference")


def test_without_the_folder_they_are_refused(tmp_path: Path) -> None:
    out = _probe_schemes("", tmp_path)
    assert "lab" not in str(out["forms"])
    assert sorted(out["vault"]) == [
        "model.source: must be hf://, s3://, az://, gs:// or a local path",
        "serving.secrets.X: must be a reference "
        f"({out['forms']}), not a value; the value was not printed",
    ]
    for stem in ("versioned", "kv", "bad_vault"):
        (issue,) = out[stem]
        assert str(issue).startswith("serving.secrets.X: must be a reference"), stem
