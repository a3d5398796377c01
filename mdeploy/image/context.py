"""
The build context of the inference image, assembled from the installed package.

Everything comes through importlib.resources, so a wheel install builds the same image as
a checkout: the Dockerfile and entrypoint.sh (package data of mdeploy.image, the files of
the repository's templates/) and the sources of `mdeploy.serve`, the only part of mdeploy
the image carries (the start-up, `mdeploy.serve.boot`, included). The image gets its own
two-line `mdeploy/__init__.py`, so the adapter imports without the rest of the package or
its dependencies.

Layout written (what templates/Dockerfile expects):

    Dockerfile  entrypoint.sh
    app/mdeploy/__init__.py  app/mdeploy/serve/**.py  (boot.py: what entrypoint.sh execs)
    home/mdeploy/.cache/huggingface/  home/mdeploy/weights/
"""

from __future__ import annotations

import os
import re
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from mdeploy.errors import PrerequisiteError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["TEMPLATE_FILES", "assemble_context", "default_base_image", "read_template"]

TEMPLATE_FILES = ("Dockerfile", "entrypoint.sh")
_EXECUTABLE = {"entrypoint.sh"}
_IMAGE_INIT = (
    '"""mdeploy inside the inference image: only the contract adapter, mdeploy.serve."""\n'
)
_BASE_ARG = re.compile(r"^ARG BASE_IMAGE=(\S+)\s*$", re.MULTILINE)
_HOME_DIRS = ("mdeploy/.cache/huggingface", "mdeploy/weights")


def read_template(name: str) -> bytes:
    """Bytes of one packaged template file (Dockerfile, entrypoint.sh)."""
    if name not in TEMPLATE_FILES:
        raise ValueError(f"not an image template: {name}")
    resource = files("mdeploy.image") / "templates" / name
    try:
        return resource.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise PrerequisiteError(
            f"the image template {name} is missing from the installed mdeploy package",
            hint="reinstall mdeploy (the wheel ships mdeploy/image/templates/)",
        ) from None


def default_base_image() -> str:
    """The pinned base image: the default of `ARG BASE_IMAGE` in the packaged Dockerfile."""
    match = _BASE_ARG.search(read_template("Dockerfile").decode("utf-8"))
    if match is None:
        raise PrerequisiteError("the packaged Dockerfile has no `ARG BASE_IMAGE=` default")
    return match.group(1)


def assemble_context(dest: Path, *, mtime: int = 0) -> Path:
    """
    Write the build context into `dest` (created if missing, must be empty) and return it.

    Every file and folder gets the mtime `mtime` (SOURCE_DATE_EPOCH), so builders that copy
    timestamps into layers still produce the same bytes from the same sources.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"build context folder is not empty: {dest}")
    for name in TEMPLATE_FILES:
        _write(dest / name, read_template(name), executable=name in _EXECUTABLE)
    package = dest / "app" / "mdeploy"
    _write(package / "__init__.py", _IMAGE_INIT.encode())
    copied = _copy_tree(files("mdeploy.serve"), package / "serve")
    for needed in ("__main__.py", "boot.py"):  # the adapter, and what entrypoint.sh execs
        if not any(p.name == needed for p in copied):
            raise PrerequisiteError(f"mdeploy.serve has no {needed}: the image cannot start")
    for sub in _HOME_DIRS:
        (dest / "home" / sub).mkdir(parents=True, exist_ok=True)
    _stamp(dest, mtime)
    return dest


def _copy_tree(source: Traversable, target: Path) -> list[Path]:
    """Copy the Python sources under `source` (no caches, no compiled files)."""
    written: list[Path] = []
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            if entry.name != "__pycache__" and not entry.name.startswith("."):
                written += _copy_tree(entry, target / entry.name)
        elif entry.name.endswith(".py") or entry.name == "py.typed":
            path = target / entry.name
            _write(path, entry.read_bytes())
            written.append(path)
    return written


def _write(path: Path, data: bytes, *, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o755 if executable else 0o644)


def _stamp(root: Path, mtime: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames]:
            os.utime(Path(dirpath) / name, (mtime, mtime), follow_symlinks=False)
    os.utime(root, (mtime, mtime))
