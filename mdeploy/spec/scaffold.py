"""
The starter spec that `mdeploy init` writes.

The text lives in `templates/starter.yaml` (package data) so it reads as the YAML people
will edit, with every field documented in comments. Only three values are filled in: the
model id, its Hugging Face source and the deployment name; each is inserted as a quoted
YAML string or checked first, so no argument can change the document's structure.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from string import Template

from pydantic import ValidationError

from mdeploy.errors import InputError
from mdeploy.spec.models import Metadata

__all__ = ["DEFAULT_MODEL", "DEFAULT_SPEC_FILE", "default_name", "render_starter", "write_starter"]

DEFAULT_MODEL = "mistralai/Mistral-7B-Instruct-v0.3"
DEFAULT_SPEC_FILE = Path("mdeploy.yaml")
_HF_ID = re.compile(r"^[A-Za-z0-9][-\w.]*/[-\w.]+$")
_MAX_NAME = 40


def default_name(model_id: str) -> str:
    """
    Derive a DNS-1123 name from a model id.

    `default_name("mistralai/Mistral-7B-Instruct-v0.3")` gives `"mistral-7b-instruct-v0-3"`.
    """
    tail = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9]+", "-", tail)[:_MAX_NAME].strip("-")
    return name or "model"


def render_starter(*, model_id: str, name: str | None = None, file: str = "mdeploy.yaml") -> str:
    """Return the starter spec text for `model_id`; InputError for an unusable id or name."""
    model_id = model_id.strip()
    if not model_id:
        raise InputError("--model must not be empty", hint="e.g. --model " + DEFAULT_MODEL)
    name = name if name is not None else default_name(model_id)
    _check_name(name)
    source = json.dumps(f"hf://{model_id}") if _HF_ID.match(model_id) else "null"
    template = resources.files("mdeploy.spec").joinpath("templates/starter.yaml").read_text("utf-8")
    return Template(template).substitute(
        name=name, model_id=json.dumps(model_id), source=source, file=file
    )


def write_starter(path: Path, text: str, *, force: bool = False) -> None:
    """Write the spec; refuse to replace an existing file unless `force`."""
    if path.exists() and not force:
        raise InputError(f"{path} already exists", hint="pass --force to overwrite it")
    with path.open("w" if force else "x", encoding="utf-8") as f:
        f.write(text)


def _check_name(name: str) -> None:
    try:
        Metadata(name=name)
    except ValidationError as exc:
        reason = exc.errors(include_url=False, include_input=False)[0]["msg"]
        raise InputError(
            f"--name {name!r}: {reason.removeprefix('Value error, ')}",
            hint="e.g. --name mistral-7b-chat",
        ) from None
