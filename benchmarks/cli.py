"""
Time whole `mdeploy` processes, the way a person at a terminal feels them.

    python benchmarks/cli.py            # table
    python benchmarks/cli.py --json     # for CI dashboards
    python benchmarks/cli.py --runs 21

Each command runs once to warm the OS file cache, then --runs times; the median is the
figure compared with the issue's targets. It also runs each command under
`python -X importtime` and lists any cloud SDK or Pulumi module that got imported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
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
]


def _argv(args: list[str]) -> list[str]:
    """The installed console script, as a user runs it."""
    return ["mdeploy", *args]


def _time_once(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(_argv(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


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
        env={**os.environ, "COLUMNS": "100"},
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


def measure(runs: int) -> list[dict]:
    results = []
    for name, args, target in CASES:
        _time_once(args)  # warm-up
        times = sorted(_time_once(args) for _ in range(runs))
        median = statistics.median(times)
        results.append(
            {
                "command": name,
                "runs": runs,
                "median_s": round(median, 4),
                "min_s": round(times[0], 4),
                "p90_s": round(times[int(0.9 * (runs - 1))], 4),
                "target_s": target,
                "ok": None if target is None else median <= target,
                "heavy_imports": heavy_imports(args),
            }
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    results = measure(opts.runs)
    if opts.json:
        print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(),
                          "results": results}, indent=2))  # fmt: skip
    else:
        print(f"{'command':38} {'median':>8} {'min':>8} {'p90':>8} {'target':>7}  heavy imports")
        for r in results:
            target = f"{r['target_s']:.2f}" if r["target_s"] else "-"
            mark = {True: "ok", False: "SLOW", None: ""}[r["ok"]]
            print(
                f"{r['command']:38} {r['median_s']:8.3f} {r['min_s']:8.3f} {r['p90_s']:8.3f} "
                f"{target:>7} {mark:4}  {', '.join(r['heavy_imports']) or 'none'}"
            )
    return 0 if all(r["ok"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
