"""
`import_only`: a few modules of a provider subpackage, the same classes as a whole import.

Each check runs in a fresh interpreter: which modules are imported is process state, and a
package another test already imported whole would make these checks pass without proving
anything.
"""

from __future__ import annotations

import re

import pytest
from freshpython import ROOT, run_json

ML = "pulumi_azure_native.machinelearningservices"
# Every target module that takes provider classes through import_only (or kubernetes/api.py).
PROVIDER_USERS = sorted(
    str(path.relative_to(ROOT))
    for path in (ROOT / "mdeploy" / "targets").glob("*/*.py")
    if re.search(r"import_only\(|\.api import", path.read_text())
)


def test_only_the_named_modules_are_imported_and_their_names_are_on_the_package():
    out = run_json(f"""
        import json, sys
        from mdeploy.targets._pulumi_imports import fallbacks, import_only
        ml = import_only("{ML}", "online_endpoint")
        print(json.dumps({{
            "resource": ml.OnlineEndpoint.__module__,
            "args": ml.SkuArgs.__module__,
            "enum": ml.SkuTier.__module__,
            "other_loaded": "{ML}.batch_deployment" in sys.modules,
            "on_parent": sys.modules["pulumi_azure_native"].machinelearningservices is ml,
            "probe": hasattr(ml, "__wrapped__"),
            "fallbacks": fallbacks(),
        }}))
    """)
    assert out == {
        "resource": f"{ML}.online_endpoint",
        "args": f"{ML}._inputs",
        "enum": f"{ML}._enums",
        "other_loaded": False,
        "on_parent": True,
        "probe": False,
        "fallbacks": [],
    }


def test_classes_are_the_ones_a_whole_import_gives_and_an_unlisted_name_still_resolves():
    out = run_json(f"""
        import importlib, json
        from mdeploy.targets._pulumi_imports import fallbacks, import_only
        ml = import_only("{ML}", "online_endpoint")
        endpoint = ml.OnlineEndpoint
        batch = ml.BatchEndpoint  # not listed: the real __init__ runs, then it resolves
        whole = importlib.import_module("{ML}")
        import pulumi_azure_native.machinelearningservices as by_statement
        print(json.dumps({{
            "same_package": whole is ml and by_statement is ml,
            "same_class": whole.OnlineEndpoint is endpoint,
            "batch": batch.__module__,
            "fallbacks": fallbacks(),
        }}))
    """)
    assert out == {
        "same_package": True,
        "same_class": True,
        "batch": f"{ML}.batch_endpoint",
        "fallbacks": [ML],
    }


def test_a_nested_kubernetes_group_behind_two_lazy_packages():
    out = run_json("""
        import json
        from mdeploy.targets._pulumi_imports import fallbacks, import_only
        core = import_only("pulumi_kubernetes.core.v1", "Service")
        service = core.Service
        from pulumi_kubernetes.core import v1
        import pulumi_kubernetes as k8s
        print(json.dumps({
            "same": v1 is core and k8s.core.v1 is core and v1.Service is service,
            "args": core.ServiceSpecArgs.__module__,
            "fallbacks": fallbacks(),
        }))
    """)
    assert out == {"same": True, "args": "pulumi_kubernetes.core.v1._inputs", "fallbacks": []}


def test_a_package_already_imported_whole_is_returned_as_it_is():
    out = run_json(f"""
        import json
        import importlib
        whole = importlib.import_module("{ML}")
        whole.Workspace  # a lazily registered package is loaded by its first attribute
        from mdeploy.targets._pulumi_imports import fallbacks, import_only
        print(json.dumps({{"same": import_only("{ML}", "workspace") is whole,
                           "fallbacks": fallbacks()}}))
    """)
    assert out == {"same": True, "fallbacks": []}


@pytest.mark.parametrize("package", ["pulumi_not_a_provider.things", "pulumi_aws.no_such_service"])
def test_a_missing_package_is_a_module_not_found_error_naming_it(package):
    out = run_json(f"""
        import json
        from mdeploy.targets._pulumi_imports import import_only
        try:
            import_only("{package}", "x")
        except ModuleNotFoundError as exc:
            print(json.dumps({{"name": exc.name}}))
    """)
    assert out["name"] in {package, package.split(".")[0]}


def test_every_component_is_among_the_modules_checked_below():
    components = (ROOT / "mdeploy" / "targets").glob("*/component.py")
    names = {str(path.relative_to(ROOT)) for path in components}
    assert len(names) >= 4 and names <= set(PROVIDER_USERS)


def test_every_provider_name_the_components_use_is_on_their_partial_packages():
    """A name missing from a component's import_only list would import the whole group."""
    out = run_json(
        """
        import ast, importlib, json, sys
        from pathlib import Path
        from types import ModuleType
        missing = []
        for path in sys.argv[1:]:
            module = importlib.import_module(path[:-3].replace("/", "."))
            for node in ast.walk(ast.parse(Path(path).read_text())):
                if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
                    continue
                alias = vars(module).get(node.value.id)
                if (isinstance(alias, ModuleType) and alias.__name__.startswith("pulumi_")
                        and node.attr not in vars(alias)):
                    missing.append(f"{path}: {node.value.id}.{node.attr}")
        from mdeploy.targets._pulumi_imports import fallbacks
        print(json.dumps({"missing": missing, "fallbacks": fallbacks()}))
        """,
        *PROVIDER_USERS,
    )
    assert out == {"missing": [], "fallbacks": []}


def test_synth_of_every_target_imports_no_whole_group():
    out = run_json("""
        import json, os, sys
        from pathlib import Path
        os.environ["MDEPLOY_SYNTH_WORKERS"] = "1"
        from mdeploy.deploy.synth import synth_targets
        from mdeploy.spec import load_spec
        from mdeploy.targets._pulumi_imports import fallbacks
        done = []
        for example in sorted(Path("examples").glob("*.yaml")):
            results, _ = synth_targets(load_spec(example), all_targets=True)
            done += [r.target for r in results]
        print(json.dumps({"targets": sorted(set(done)), "fallbacks": fallbacks(),
                          "whole_ml": "pulumi_azure_native.machinelearningservices.batch_deployment"
                          in sys.modules}))
    """)
    assert out == {
        "targets": ["aws", "azure", "gcp", "kubernetes"],
        "fallbacks": [],
        "whole_ml": False,
    }
