"""The registry of targets: found by a scan, cheap to list, every derived list consistent."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mdeploy import target_names as names
from mdeploy.errors import InputError
from mdeploy.targets import (
    all_targets,
    deploy_target_for,
    extras_for_modules,
    output_names,
    placement_names,
    registry_provider,
    stack_region,
    target_names,
)


def test_names_read_as_text_agree_with_the_imported_classes() -> None:
    """spec/ and catalog/ read catalog_targets as text; the classes must say the same."""
    for target in all_targets():
        assert names._declared(str(names.target_folders()[target.name])) == tuple(
            target.catalog_targets
        )
    assert placement_names() == tuple(sorted({p for t in all_targets() for p in t.catalog_targets}))
    assert target_names() == tuple(sorted(t.name for t in all_targets()))


def test_an_unknown_target_names_the_registered_ones() -> None:
    with pytest.raises(InputError) as caught:
        deploy_target_for("moon")
    assert caught.value.hint is not None and all(n in caught.value.hint for n in placement_names())


def test_every_target_module_its_extra_installs_maps_to_that_extra() -> None:
    extras = extras_for_modules()
    for target in all_targets():
        for module in target.python_modules:
            assert target.name in extras[module].split("|")


def test_output_names_start_with_the_common_four_and_have_no_repeat() -> None:
    out = output_names()
    assert out[:4] == ("endpoint_name", "endpoint_url", "image", "repository_url")
    assert len(out) == len(set(out))


def test_at_most_one_target_takes_the_generic_registry_login() -> None:
    assert sum(t.generic_registry for t in all_targets()) <= 1
    generic = next((t.name for t in all_targets() if t.generic_registry), None)
    assert registry_provider("registry.example.com:5000") == generic


def test_stack_region_is_read_from_a_provider_region_key() -> None:
    plugin = next(p for t in all_targets() for p in t.pulumi_plugins)
    assert stack_region({f"{plugin}:region": "xx-test-1"}) == "xx-test-1"
    assert stack_region({}, default="d") == "d"


def test_the_cli_help_imports_no_target_module() -> None:
    """Listing targets for the help text reads files; no target.py, SDK or Pulumi is loaded.

    (`google` and `google.cloud` themselves are namespace packages a .pth file of the Vertex
    SDK loads at interpreter start, so only their subpackages count.)
    """
    code = (
        "import json, sys; import mdeploy.cli.app; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('mdeploy.targets.', "
        "'pulumi', 'boto3', 'botocore', 'azure.', 'google.cloud.')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
