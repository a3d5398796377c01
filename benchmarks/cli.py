"""
Time whole `mdeploy` processes, the way a person at a terminal feels them.

    python benchmarks/cli.py            # table
    python benchmarks/cli.py --json     # for CI dashboards
    python benchmarks/cli.py --runs 21
    python benchmarks/cli.py --install   # + README command 1: seconds and MB of `pip install .`
    python benchmarks/cli.py --suite     # + the whole test suite: tests passed and seconds

Each command runs once to warm the OS file cache, then --runs times, the commands alternated
round by round; the median wall time and the median CPU time (user + system of the child) are
reported, the wall median compared with the targets, and synth's CPU over plan's per round
(issue 15). It also runs each command under `python -X importtime` and lists any cloud
SDK or Pulumi module that got imported. Every figure the README quotes comes from here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "mistral-7b-eu.yaml"
HEAVY = ("pulumi", "boto3", "botocore", "azure", "google", "kubernetes", "httpx", "uvicorn")

# name, argv after `mdeploy`, target median in seconds (None = no target)
CASES: list[tuple[str, list[str], float | None]] = [
    ("mdeploy --help", ["--help"], 0.25),
    ("mdeploy plan mistral-7b-eu", ["plan", str(EXAMPLE)], 0.6),
    ("mdeploy plan mistral-7b-eu --json", ["plan", str(EXAMPLE), "--json"], None),
    ("mdeploy catalog offers --json", ["catalog", "offers", "--json"], None),
    ("mdeploy compare mistral-7b-eu", ["compare", str(EXAMPLE)], None),
    ("mdeploy validate mistral-7b-eu", ["validate", str(EXAMPLE)], None),
    (
        "mdeploy synth mistral-7b-eu --all-targets --json",
        ["synth", str(EXAMPLE), "--all-targets", "--json"],
        4.0,
    ),
]


# As a user's second run finds it: bytecode compiled and cached by the warm-up run. Some
# shells and containers set PYTHONDONTWRITEBYTECODE, which would make every timed run compile
# each module that has no cached .pyc yet (tens of ms per command, more for synth).
RUN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _argv(args: list[str]) -> list[str]:
    """The installed console script, as a user runs it."""
    return ["mdeploy", *args]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time_once(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one whole process."""
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run(
        _argv(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=RUN_ENV, check=False
    )
    return time.perf_counter() - start, _children_cpu() - cpu


def heavy_imports(args: list[str]) -> list[str]:
    """Top-level heavy packages imported by the command (from `python -X importtime`)."""
    code = (
        "import sys; from mdeploy.cli.app import main; "
        "sys.argv = ['mdeploy', *sys.argv[1:]]; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        capture_output=True,
        text=True,
        env={**RUN_ENV, "COLUMNS": "100"},
        check=False,
    )
    found = set()
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        module = line.rsplit("|", 1)[1].strip()
        root = module.split(".")[0]
        if root in HEAVY:
            found.add(root)
    return sorted(found)


def measure(runs: int) -> tuple[list[dict], dict]:
    """
    Every command `runs` times, alternated round by round (after one warm-up each), so that a
    host whose speed drifts shifts every command alike; and issue 15's ratio, synth CPU ÷ plan
    CPU, as the median [min, max] of the rounds' ratios.
    """
    for _, args, _ in CASES:
        _time_once(args)  # warm-up: OS file cache, catalog cache, bytecode
    samples: list[list[tuple[float, float]]] = [[] for _ in CASES]
    for _ in range(runs):
        for got, (_, args, _) in zip(samples, CASES, strict=True):
            got.append(_time_once(args))
    results = []
    for got, (name, args, target) in zip(samples, CASES, strict=True):
        times = sorted(wall for wall, _ in got)
        median = statistics.median(times)
        results.append(
            {
                "command": name,
                "runs": runs,
                "median_s": round(median, 4),
                "cpu_median_s": round(statistics.median(cpu for _, cpu in got), 4),
                "min_s": round(times[0], 4),
                "p90_s": round(times[int(0.9 * (runs - 1))], 4),
                "target_s": target,
                "ok": None if target is None else median <= target,
                "heavy_imports": heavy_imports(args),
            }
        )
    names = [name for name, _, _ in CASES]
    plan = samples[names.index("mdeploy plan mistral-7b-eu")]
    synth = samples[names.index("mdeploy synth mistral-7b-eu --all-targets --json")]
    ratios = [s[1] / p[1] for p, s in zip(plan, synth, strict=True)]
    ratio = {
        "synth_cpu_over_plan_cpu": round(statistics.median(ratios), 2),
        "min_max": [round(min(ratios), 2), round(max(ratios), 2)],
    }
    return results, ratio


def measure_install() -> dict:
    """README command 1's install: a fresh venv, `pip install .` (core only), time and size."""
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)]
        subprocess.run(pip, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
        plan = subprocess.run(
            [str(venv / "bin" / "mdeploy"), "plan", str(EXAMPLE)], capture_output=True, check=False
        )
    return {
        "install_s": round(seconds, 1),
        "venv_mb": round(size / 1e6),
        "plan_rc": plan.returncode,
    }


def measure_suite() -> dict:
    """The whole suite as .ci/run runs it (already installed): tests passed and seconds."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error)", tail)}
    return {"suite_s": round(seconds), "exit": proc.returncode, **counts, "summary": tail}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--install", action="store_true", help="also time README command 1")
    parser.add_argument("--suite", action="store_true", help="also run the whole test suite")
    opts = parser.parse_args()
    if not shutil.which("mdeploy"):
        print("mdeploy is not on PATH: activate the venv first", file=sys.stderr)
        return 3
    results, ratio = measure(opts.runs)
    extra = {}
    if opts.install:
        extra["install"] = measure_install()
    if opts.suite:
        extra["suite"] = measure_suite()
    if opts.json:
        print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(),
                          "results": results, "ratio": ratio, **extra}, indent=2))  # fmt: skip
    else:
        print(
            f"{'command':50} {'median':>7} {'cpu':>7} {'min':>7} {'p90':>7} {'target':>6}"
            "  heavy imports"
        )
        for r in results:
            target = f"{r['target_s']:.2f}" if r["target_s"] else "-"
            mark = {True: "ok", False: "SLOW", None: ""}[r["ok"]]
            print(
                f"{r['command']:50} {r['median_s']:7.3f} {r['cpu_median_s']:7.3f} "
                f"{r['min_s']:7.3f} {r['p90_s']:7.3f} {target:>6} {mark:4}  "
                f"{', '.join(r['heavy_imports']) or 'none'}"
            )
        low, high = ratio["min_max"]
        print(
            f"synth CPU ÷ plan CPU (issue 15: ≤ 6): {ratio['synth_cpu_over_plan_cpu']:.2f} "
            f"[{low:.2f}–{high:.2f}] over the rounds"
        )
        for name, figures in extra.items():
            print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    return 0 if all(r["ok"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
