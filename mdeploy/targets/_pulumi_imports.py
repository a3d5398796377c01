"""
Import the few resources a component uses from a Pulumi provider subpackage, not all of it.

A generated provider subpackage's `__init__` star-imports every resource and function of its
API group: 142 modules for `pulumi_azure_native.machinelearningservices`, 52 for
`pulumi_kubernetes.core.v1`, where a component uses three or four. `import_only` makes the
package module without running that `__init__`, imports the modules named (plus the
subpackage's shared `_enums` and `_inputs`, which the real `__init__` exports too) and binds
their public names on the package exactly as the star imports would, so `ml.OnlineEndpoint`
and `ml.SkuArgs` read as usual and are the very classes a plain import gives.

Anything else asked of the package (Pulumi's own lookup of a resource class by type token
included) runs the real `__init__` first through the module's `__getattr__` (PEP 562): slower,
never wrong. `fallbacks()` lists the packages where that happened; a test keeps it empty for
every target's synth, so each component's list of modules stays complete.

Measured with `synth --all-targets` (2-core machine): the provider imports of the four targets
took 1.87 s of CPU as whole subpackages and 1.27 s this way.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

__all__ = ["fallbacks", "import_only"]

_SHARED = ("_enums", "_inputs")  # what every resource module of a subpackage builds on
_PARTIAL: set[str] = set()  # packages made here whose real __init__ has not run
_FALLBACKS: list[str] = []


def import_only(package: str, *modules: str) -> ModuleType:
    """
    `package` (e.g. "pulumi_aws.sagemaker") with only `modules` (e.g. "model") imported.

    A package that something already imported whole is returned as it is. A missing provider
    raises ModuleNotFoundError naming it, as `import` would.
    """
    module = sys.modules.get(package)
    if module is None or type(module) is not ModuleType:
        module = _bare_package(package)
    if package in _PARTIAL:
        for name in _SHARED:
            if _submodule_exists(module, name):
                _export(module, name)
        for name in modules:
            _export(module, name)
    return module


def fallbacks() -> list[str]:
    """Packages whose whole `__init__` had to run because a name was not in the list given."""
    return list(_FALLBACKS)


def _bare_package(package: str) -> ModuleType:
    """The package module with its `__init__` not run, in sys.modules and bound on its parent."""
    parent_name, _, child = package.rpartition(".")
    parent = importlib.import_module(parent_name)
    search_path = parent.__path__
    module = sys.modules.get(package)
    if module is not None and type(module) is ModuleType:
        return module  # imported whole meanwhile
    if module is not None:
        # The provider's `lazy_import` registered it: a ModuleType subclass whose first
        # attribute access runs `__init__`. Disarm it, keeping the one object everyone holds.
        module.__class__ = ModuleType
        spec = module.__spec__
    else:
        spec = importlib.machinery.PathFinder.find_spec(package, search_path)
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"No module named {package!r}", name=package)
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        setattr(parent, child, module)
    module.__getattr__ = _complete_on_demand(module, spec)  # type: ignore[attr-defined]
    _PARTIAL.add(package)
    return module


def _complete_on_demand(module: ModuleType, spec: importlib.machinery.ModuleSpec) -> Any:
    """The package's `__getattr__`: a submodule is imported alone, anything else runs `__init__`."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):  # a tool probing (`__wrapped__`, `__all__`): not a resource
            raise AttributeError(f"module {spec.name!r} has no attribute {name!r}")
        if _submodule_exists(module, name):
            return importlib.import_module(f"{spec.name}.{name}")
        del module.__dict__["__getattr__"]
        _PARTIAL.discard(spec.name)
        _FALLBACKS.append(spec.name)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        try:
            return module.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {spec.name!r} has no attribute {name!r}") from None

    return __getattr__


def _export(package: ModuleType, name: str) -> None:
    """`from .name import *` into the package, as the generated `__init__` does."""
    sub = importlib.import_module(f"{package.__name__}.{name}")
    public = getattr(sub, "__all__", None)
    if public is None:
        public = [key for key in vars(sub) if not key.startswith("_")]
    package.__dict__.update((key, getattr(sub, key)) for key in public)


def _submodule_exists(package: ModuleType, name: str) -> bool:
    fullname = f"{package.__name__}.{name}"
    if fullname in sys.modules:
        return True
    return importlib.machinery.PathFinder.find_spec(fullname, package.__path__) is not None
