"""
Property test over spec structure and values: 2,000 generated specs through validate and plan.

Hypothesis builds a plausible spec field by field (optional fields left out, an unknown key
now and then, Kubernetes pools with markup in their names), then swaps up to three of its
values for hostile ones (wrong type, huge or non-finite number, Rich markup, unicode,
credential-shaped text, nested junk), writes it as YAML and runs the CLI in-process. Every
run keeps the promises in `fuzz_harness.problems`. `derandomize=True`: the same 2,000 specs
every run, so the suite is reproducible.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from fuzz.fuzz_harness import TOKENS, problems, run
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

CASES = 2000
MARKUP = ("[bold]", "[/]", "x[/red]", "[link=x]y", "[")
MODELS = ("mistralai/Mistral-7B-Instruct-v0.3", "Qwen/Qwen2.5-7B-Instruct", "google/gemma-2-9b-it")
FLAGS = ("seed", "enforce-eager", "max-num-seqs")
DIGEST_IMAGE = "r.example/x@sha256:" + "ab" * 32

hostile = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*MARKUP, *TOKENS, "", "日本語\u202e", "a" * 3000, "null", "1.10"]),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from([1, "x", *TOKENS]), max_size=3),
    st.dictionaries(st.sampled_from(["a", "[b]", *TOKENS]), st.integers(), max_size=2),
)


def mapping(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A mapping whose optional keys may be missing, with an unknown key in 1 of 20."""
    base = st.fixed_dictionaries(required, optional=optional)
    extra = st.dictionaries(st.sampled_from(["unknwn", "[x]", *TOKENS]), hostile, max_size=1)
    rare = st.sampled_from([False] * 19 + [True])
    return st.builds(lambda a, add, b: {**a, **b} if add else a, base, rare, extra)


def _slots(node: Any, parent: Any = None, key: Any = None) -> list[tuple[Any, Any]]:
    """(container, key) of every value in the spec, for injection."""
    out = [(parent, key)] if parent is not None else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(
        node, list) else ()  # fmt: skip
    for k, v in items:
        out += _slots(v, node, k)
    return out


def _inject(data: Any, draw: st.DataObject) -> None:
    """Replace 0-3 values of a plausible spec with hostile ones."""
    for _ in range(draw.draw(st.integers(0, 3), label="injections")):
        slots = _slots(data)
        if not slots:
            return
        container, key = draw.draw(st.sampled_from(slots), label="slot")
        container[key] = draw.draw(hostile, label="value")


pool = mapping(
    {
        "name": st.sampled_from(["pool-a", "p" * 90, *MARKUP]),
        "gpu": st.sampled_from(["H100", "L4", "A100-80GB", "[b]"]),
        "gpu_count": st.integers(1, 16),
        "country": st.sampled_from(["FR", "DE", "US"]),
    },
    {
        "region": st.sampled_from(["eu-x", "[/]", "r" * 100]),
        "hourly_usd": st.floats(0, 100),
        "gpu_memory_gib": st.floats(1, 200),
    },
)
architecture = mapping(
    {
        "params_b": st.floats(0.1, 1000),
        "layers": st.integers(1, 200),
        "attention_heads": st.sampled_from([8, 32, 64]),
        "kv_heads": st.sampled_from([1, 8]),
        "head_dim": st.sampled_from([64, 128]),
    },
    {},
)
model = mapping(
    {"id": st.sampled_from(MODELS)},
    {
        "revision": st.just("main"),
        "max_context": st.integers(128, 200_000),
        "dtype": st.sampled_from(["bfloat16", "fp8"]),
        "architecture": architecture,
    },
)
serving = mapping(
    {},
    {
        "max_concurrency": st.integers(1, 64),
        "engine_args": st.dictionaries(st.sampled_from(FLAGS), st.integers(0, 9)),
        "secrets": st.dictionaries(st.sampled_from(["HF_TOKEN", "X"]), st.just("env:X")),
        "replicas": mapping({}, {"min": st.integers(1, 4)}),
    },
)
placement = mapping(
    {},
    {
        "clouds": st.lists(st.sampled_from(["aws", "gcp", "kubernetes"])),
        "residency": st.lists(st.sampled_from(["EU", "FR", "US"]), max_size=2),
        "max_hourly_usd": st.floats(0.1, 1000),
        "kubernetes": mapping({"pools": st.lists(pool, max_size=2)}, {}),
    },
)
spec = mapping(
    {
        "apiVersion": st.just("mdeploy/v1"),
        "kind": st.just("Deployment"),
        "metadata": mapping({"name": st.sampled_from(["chat", "a-b"])}, {}),
        "model": model,
        "environments": st.fixed_dictionaries(
            {"prod": st.just({"serving": {"image": DIGEST_IMAGE}})},
            optional={"dev": st.just({"serving": {"replicas": {"min": 2, "max": 2}}})},
        ),
    },
    {"serving": serving, "placement": placement},
)
command = st.tuples(
    st.sampled_from(["validate", "plan"]),
    st.booleans(),
    st.sampled_from([None, None, None, "prod", "dev"]),
)

_DIR = Path(tempfile.mkdtemp(prefix="mdeploy-fuzz-"))


@settings(
    max_examples=CASES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=spec, how=command, draw=st.data())
def test_generated_specs_keep_every_promise(
    data: Any, how: tuple[str, bool, str | None], draw: st.DataObject
) -> None:
    data = copy.deepcopy(data)  # st.just values are shared between examples
    _inject(data, draw)
    verb, as_json, env = how
    path = _DIR / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    args = [verb, str(path), *(["--json"] if as_json else []), *(["--env", env] if env else [])]
    outcome = run(*args)
    event(f"{verb} exit {outcome.code}")  # --hypothesis-show-statistics: how deep it got
    assert problems(outcome) == [], (outcome.args, outcome.stdout[-500:], outcome.stderr[-500:])
