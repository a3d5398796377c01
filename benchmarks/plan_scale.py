"""
Does the planner's cost stay flat when the catalog grows 100×?

    python benchmarks/plan_scale.py              # 1× and 100×, 5 alternated rounds
    python benchmarks/plan_scale.py --runs 9 --scale 100 --json
    python benchmarks/plan_scale.py --repo /tmp/old-checkout   # the same runs on other code

It writes a catalog `--scale` times the bundled one into a temp dir (every row copied with
its region renamed `<region>-x<k>`, and the region table copied the same way, so residency
and region-access rules see the same mix as the bundled data), then runs `mdeploy plan`,
`plan --json` and `compare` on examples/mistral-7b-eu.yaml against the bundled catalog and
against the big one (MDEPLOY_CATALOG_DIR), each in a fresh process, the two sizes alternated
round by round. It reports the median CPU time (user + system of the child), peak RSS, and the
ratio 100× / 1× that issue 15 sets a goal for (plan ≤ 2.5×): the median of the rounds' ratios.
The catalog cache lives in a temp XDG_CACHE_HOME that is
warmed once before timing, as it is after a user's first run.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cases(repo: Path) -> dict[str, list[str]]:
    example = str(repo / "examples" / "mistral-7b-eu.yaml")
    return {
        "plan": ["plan", example],
        "plan --json": ["plan", example, "--json"],
        "compare": ["compare", example],
    }


def _scaled_csv(path: Path, scale: int) -> str:
    """Copies of every row, region renamed per copy (copy 0 keeps the real name)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        columns = reader.fieldnames or []
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        for k in range(scale):
            writer.writerow({**row, "region": row["region"] if k == 0 else f"{row['region']}-x{k}"})
    return out.getvalue()


def make_catalog(directory: Path, scale: int, repo: Path = ROOT) -> int:
    """Write a `scale`× copy of `repo`'s bundled catalog into `directory`; return its size."""
    bundled = repo / "mdeploy" / "catalog" / "data"
    directory.mkdir(parents=True, exist_ok=True)
    offers = _scaled_csv(bundled / "offers.csv", scale)
    (directory / "offers.csv").write_text(offers, encoding="utf-8")
    (directory / "regions.csv").write_text(
        _scaled_csv(bundled / "regions.csv", scale), encoding="utf-8"
    )
    return offers.count("\n") - 1


def _run_once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """CPU seconds and peak RSS (MiB) of one `mdeploy` process."""
    code = (
        "import resource, sys, subprocess\n"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(u.ru_utime + u.ru_stime, u.ru_maxrss)\n"
    )
    mdeploy = str(Path(sys.executable).parent / "mdeploy")
    out = subprocess.run(
        [sys.executable, "-c", code, mdeploy, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), int(out[1]) / 1024


def measure(args: list[str], envs: dict[str, dict[str, str]], runs: int) -> dict[str, object]:
    """
    Each catalog size `runs` times, alternated run by run, so that a machine whose speed drifts
    (a shared host) shifts both sides of each ratio alike; the ratio is the median of the
    per-round ratios, with its min-max.
    """
    for env in envs.values():
        _run_once(args, env)  # warm the OS file cache, the catalog cache and bytecode
    samples: dict[str, list[tuple[float, float]]] = {size: [] for size in envs}
    for _ in range(runs):
        for size, env in envs.items():
            samples[size].append(_run_once(args, env))
    one, many = samples.values()
    ratios = [b[0] / a[0] for a, b in zip(one, many, strict=True)]
    out: dict[str, object] = {
        size: {
            "cpu_s": round(statistics.median(s[0] for s in got), 3),
            "rss_mib": round(max(s[1] for s in got), 1),
        }
        for size, got in samples.items()
    }
    out["ratio_cpu"] = round(statistics.median(ratios), 2)
    out["ratio_min_max"] = [round(min(ratios), 2), round(max(ratios), 2)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--repo", type=Path, default=ROOT, help="run this checkout's code, catalog and example"
    )
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "catalog"
        offers = make_catalog(big, args.scale, repo)
        base_env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache"), "COLUMNS": "120"}
        base_env.pop("PYTHONDONTWRITEBYTECODE", None)  # the warm-up run caches bytecode too
        if repo != ROOT:
            base_env["PYTHONPATH"] = str(repo)
        base_env.pop("MDEPLOY_CATALOG_DIR", None)
        big_env = {**base_env, "MDEPLOY_CATALOG_DIR": str(big)}
        for name, cmd in cases(repo).items():
            results[name] = measure(cmd, {"1x": base_env, f"{args.scale}x": big_env}, args.runs)
    if args.json:
        doc = {"repo": str(repo), "offers_scaled": offers, "runs": args.runs, "results": results}
        print(json.dumps(doc))
        return 0
    print(
        f"{offers} offers at {args.scale}×, {args.runs} alternated rounds "
        "(median CPU s, peak RSS MiB; ratio: median [min–max] of the rounds)"
    )
    print(f"{'command':<14}{'1× CPU':>9}{'1× MiB':>9}{'N× CPU':>9}{'N× MiB':>9}  ratio")
    for name, r in results.items():
        a, b, spread = r["1x"], r[f"{args.scale}x"], r["ratio_min_max"]
        assert isinstance(a, dict) and isinstance(b, dict) and isinstance(spread, list)
        print(
            f"{name:<14}{a['cpu_s']:>9.3f}{a['rss_mib']:>9.1f}{b['cpu_s']:>9.3f}"
            f"{b['rss_mib']:>9.1f}  {r['ratio_cpu']:.2f} [{spread[0]:.2f}–{spread[1]:.2f}]"
        )
    goal = results["plan"]["ratio_cpu"]
    print(f"goal (issue 15): plan at 100× ≤ 2.5× the CPU of plan at 1× — now {goal}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
