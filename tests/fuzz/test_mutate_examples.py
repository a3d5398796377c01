"""
Mutation fuzzing over the example specs: 2,000 seeded mutants through validate and plan.

Each mutant takes one of examples/*.yaml and applies one to three mutations — delete,
duplicate, retype, rename or replace a key or value, inject Rich markup, huge or non-finite
numbers, unicode, credential-shaped strings, a hostile Kubernetes pool — then runs
`validate` or `plan` (with and without --json, sometimes with --env) in-process. Every run
must keep the promises in `fuzz_harness.problems`. Seeded: the same 2,000 mutants every time.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import yaml
from fuzz.fuzz_harness import TOKENS, problems, run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CASES = 2000
SEED = 20261206

MARKUP = ("[bold]x", "[/]", "a[/red]b", "[link=file:///etc/passwd]z[/link]", "[red", "x]", "[[")
NUMBERS: tuple[Any, ...] = (
    10**30, -(10**30), 10**400, 2**63, -1, 0, 1e308, -1e308, float("inf"), float("-inf"),
    float("nan"), 1e-320, 0.5, 3.7,
)  # fmt: skip
TEXTS = (
    "", " ", "ÿ𝔘\u202edlrow", "日本語", "a" * 5000, "null", "~", "0x1F", "1.10", "NO",
    "hf://user:pa55w0rd@huggingface.co/x", "s3://AKIAJ7Q2WZ8K4L6M3N5P:pw@bucket/x", "../../etc",
    "aws", "EU", "kubernetes", "H100", "main",
)  # fmt: skip
KEYS = ("unknwn", "mdel", "max_contxt", "environments", "apiVersion", "[bold]k", *TOKENS)


def _hostile(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(MARKUP)
    if kind == 1:
        return rng.choice(NUMBERS)
    if kind == 2:
        return rng.choice(TEXTS)
    if kind == 3:
        return rng.choice(TOKENS)
    if kind == 4:
        return rng.choice([[], {}, [rng.choice(TOKENS)], {"a": {"b": [1, 2]}}, True, None])
    return rng.choice(MARKUP) + rng.choice(TOKENS)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, (*prefix, i))
    return out


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


def _pick(rng: random.Random, usual: Any, odd: tuple[Any, ...]) -> Any:
    """Mostly a value that validates (so the pool reaches the planner and the tables)."""
    return usual if rng.random() < 0.9 else rng.choice(odd)


def _hostile_pool(rng: random.Random) -> dict[str, Any]:
    pool: dict[str, Any] = {
        "name": _pick(rng, rng.choice(["pool-a", "x" * 120, *MARKUP]), TOKENS),
        "gpu": _pick(rng, "H100", ("L40S", "[bold]GPU", "NOPE-GPU", *TOKENS)),
        "gpu_count": _pick(rng, 8, (1, 2, 10**30, 0, "x")),
        "country": _pick(rng, "FR", ("DE", "US", "[b]", "zz")),
        "region": rng.choice(["eu-x", *MARKUP, "ap-" + "x" * 200, "日本語"]),
    }
    if rng.random() < 0.7:
        pool["hourly_usd"] = _pick(rng, 1.5, (10**30, 1e308, float("inf"), -1, 3))
    if rng.random() < 0.4:
        pool["gpu_memory_gib"] = _pick(rng, 80, (1e308, float("nan"), 10**30, 0.001))
    return pool


def _mutate(data: dict[str, Any], rng: random.Random) -> None:
    paths = _paths(data)
    path = rng.choice(paths)
    parent, last = _parent(data, path), path[-1]
    op = rng.choice((0, 1, 1, 2, 3, 4, 4, 4, 5))  # hostile pools reach the planner and tables
    if op == 0:  # delete
        del parent[last]
    elif op == 1:  # retype / replace with a hostile value
        parent[last] = _hostile(rng)
    elif op == 2 and isinstance(parent, dict):  # rename a key
        parent[rng.choice(KEYS)] = parent.pop(last)
    elif op == 3 and isinstance(parent, dict):  # add an unknown or duplicate-looking key
        parent[rng.choice(KEYS)] = _hostile(rng)
    elif op == 4:  # a hostile pool, so its name and region reach the tables
        placement = data.setdefault("placement", {})
        if not isinstance(placement, dict):
            return
        placement["clouds"] = rng.choice([["kubernetes"], ["kubernetes", "aws"], ["coreweave"]])
        pools = [_hostile_pool(rng) for _ in range(rng.choice((1, 1, 2)))]
        placement["kubernetes"] = {"pools": pools}
    else:  # swap a subtree for another one
        parent[last] = copy.deepcopy(_parent(data, (*rng.choice(paths), None)))


def _text_mutation(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    i = rng.randrange(len(lines))
    op = rng.randrange(3)
    if op == 0:  # duplicate a line: duplicate keys
        lines.insert(i, lines[i])
    elif op == 1:
        del lines[i]
    else:
        lines[i] += rng.choice([" [bold]", " #" + TOKENS[0], "\t", ": x", " &a", " *a"])
    return "\n".join(lines) + "\n"


def mutant(seed: int) -> tuple[str, list[str]]:
    """The text of mutant `seed` and the CLI arguments to run it with (path appended later)."""
    rng = random.Random(seed)
    example = rng.choice(EXAMPLES)
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if data and isinstance(data, dict):
            _mutate(data, rng)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=rng.random() < 0.5, width=1000)
    if rng.random() < 0.15:
        text = _text_mutation(text, rng)
    args = [rng.choice(["validate", "plan"])]
    if rng.random() < 0.5:
        args.append("--json")
    if rng.random() < 0.3:
        args += ["--env", rng.choice(["prod", "staging", "nope"])]
    return text, args


def test_example_mutants_keep_every_promise(tmp_path: Path) -> None:
    failures: dict[str, list[int]] = {}
    for seed in range(SEED, SEED + CASES):
        text, args = mutant(seed)
        path = tmp_path / f"m{seed % 7}.yaml"
        path.write_text(text, encoding="utf-8")
        outcome = run(args[0], str(path), *args[1:])
        for problem in problems(outcome):
            failures.setdefault(problem.split(":")[0], []).append(seed)
    summary = {k: (len(v), v[:5]) for k, v in failures.items()}
    assert not failures, f"broken promises (count, first seeds): {summary}"
