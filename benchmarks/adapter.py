"""
What the contract adapter costs: the same requests sent straight to the engine and through
the adapter, on loopback.

Starts the stand-in engine (tests/serve/fake_engine.py, a minimal ASGI app under uvicorn, so
the engine is not what is being measured) and the adapter (`python -m mdeploy.serve`, as in
the image), then drives both with a small keep-alive HTTP/1.1 load generator written on raw
asyncio streams (an HTTP library in the client would cost more than the adapter does).

Scenarios, each bounded by a request count and a time limit:

- small non-streaming completions, engine answering at once: the pure proxy cost, at 1 client
  (latency added) and at N clients (throughput);
- the same with an engine service time (`--service-ms`, default 20): closer to a real LLM
  request, where even a one-token answer takes milliseconds of GPU time;
- streaming: time to the first SSE event and to the end of the stream, direct vs adapter.

Targets from the issue: p50 added latency <= 1 ms and throughput >= 90 % of direct for small
non-streaming requests; the first streamed byte not delayed by buffering.

Run: `python benchmarks/adapter.py [--clients 16] [--requests 3000] [--duration 10] [--json]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_ENGINE = ROOT / "tests" / "serve" / "fake_engine.py"
MODEL = "bench/model"


@dataclass
class Run:
    """One measured scenario on one path."""

    scenario: str
    target: str  # direct | adapter:/v1/completions | adapter:/invocations
    clients: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    engine_cpu_us: float | None  # CPU time per request, from /proc: robust to a busy machine
    adapter_cpu_us: float | None


@dataclass
class StreamRun:
    target: str
    samples: int
    first_byte_p50_ms: float
    total_p50_ms: float


# Processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(argv: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "AZUREML_", "SM_"))}
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**clean, **(env or {})},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{argv[:3]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{argv[:3]} did not listen on {port}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


# Load generator --------------------------------------------------------------------------


def request_bytes(path: str, body: dict) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def read_response(reader: asyncio.StreamReader) -> tuple[int, float | None]:
    """Read one response; return (status, seconds to the first body byte or None)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        first = None
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if first is None and size:
                first = time.perf_counter()
            if size == 0:
                return status, first
    start_at = lower.index(b"content-length:") + len(b"content-length:")
    length = int(lower[start_at : lower.index(b"\r\n", start_at)])
    await reader.readexactly(length)
    return status, time.perf_counter()


async def one_client(
    port: int, request: bytes, budget: list[int], deadline: float, out: list
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            status, _ = await read_response(reader)
            out.append(time.perf_counter() - started)
            errors += status != 200
    finally:
        writer.close()
    return errors


async def load(port: int, request: bytes, clients: int, count: int, duration: float):
    latencies: list[float] = []
    budget = [count]
    started = time.perf_counter()
    deadline = started + duration
    errors = await asyncio.gather(
        *(one_client(port, request, budget, deadline, latencies) for _ in range(clients))
    )
    return latencies, sum(errors), time.perf_counter() - started


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_request_us(before: float | None, after: float | None, count: int) -> float | None:
    if before is None or after is None or not count:
        return None
    return round((after - before) * 1e6 / count, 1)


def measure(
    scenario: str, target: str, port: int, request: bytes, args, clients: int, pids: dict
) -> Run:
    asyncio.run(load(port, request, clients, min(200, args.requests), 5))  # warm-up
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    latencies, errors, seconds = asyncio.run(
        load(port, request, clients, args.requests, args.duration)
    )
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    latencies.sort()
    return Run(
        scenario=scenario,
        target=target,
        clients=clients,
        requests=len(latencies),
        errors=errors,
        seconds=round(seconds, 3),
        rps=round(len(latencies) / seconds, 1),
        p50_ms=round(statistics.median(latencies) * 1000, 3),
        p99_ms=round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
        engine_cpu_us=per_request_us(before["engine"], after["engine"], len(latencies)),
        adapter_cpu_us=per_request_us(before["adapter"], after["adapter"], len(latencies)),
    )


async def stream_samples(
    port: int, request: bytes, samples: int
) -> tuple[list[float], list[float]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    firsts, totals = [], []
    try:
        for _ in range(samples):
            started = time.perf_counter()
            writer.write(request)
            _, first = await read_response(reader)
            totals.append(time.perf_counter() - started)
            firsts.append((first or time.perf_counter()) - started)
    finally:
        writer.close()
    return firsts, totals


def measure_stream(target: str, port: int, path: str, args) -> StreamRun:
    body = {
        "prompt": "p",
        "model": MODEL,
        "stream": True,
        "x_fake": {"chunks": args.stream_chunks, "chunk_delay": args.stream_gap_ms / 1000},
    }
    firsts, totals = asyncio.run(
        stream_samples(port, request_bytes(path, body), args.stream_samples)
    )
    return StreamRun(
        target=target,
        samples=len(firsts),
        first_byte_p50_ms=round(statistics.median(firsts) * 1000, 2),
        total_p50_ms=round(statistics.median(totals) * 1000, 2),
    )


# Report ----------------------------------------------------------------------------------


def compare(runs: list[Run]) -> list[dict]:
    """Adapter vs direct for each scenario: added p50 latency and throughput ratio."""
    out = []
    for run in runs:
        if run.target == "direct":
            continue
        base = next(r for r in runs if r.scenario == run.scenario and r.target == "direct")
        out.append(
            {
                "scenario": run.scenario,
                "target": run.target,
                "added_p50_ms": round(run.p50_ms - base.p50_ms, 3),
                "throughput_vs_direct": round(run.rps / base.rps, 3),
            }
        )
    return out


def print_table(report: dict) -> None:
    print(f"# {report['machine']}")
    cols = ("clients", "req/s", "p50 ms", "p99 ms", "err", "engine CPU us", "adapter CPU us")
    print(f"{'scenario':34} {'target':24} " + " ".join(f"{c:>8}" for c in cols))
    for r in report["runs"]:
        cpu = [r["engine_cpu_us"], r["adapter_cpu_us"]]
        cells = [r["clients"], f"{r['rps']:.1f}", f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}"]
        cells += [r["errors"], *("-" if c is None else f"{c:.0f}" for c in cpu)]
        print(f"{r['scenario']:34} {r['target']:24} " + " ".join(f"{c:>8}" for c in cells))
    print()
    print(f"{'scenario':34} {'target':24} {'added p50 ms':>12} {'throughput':>11}")
    for c in report["comparison"]:
        added, ratio = c["added_p50_ms"], c["throughput_vs_direct"]
        print(f"{c['scenario']:34} {c['target']:24} {added:>12.3f} {ratio:>10.1%}")
    print()
    shape = report["stream_shape"]
    print(f"streaming: {shape['chunks']} events, {shape['gap_ms']:g} ms apart")
    print(f"{'target':24} {'samples':>7} {'first event p50 ms':>19} {'total p50 ms':>13}")
    for s in report["streaming"]:
        first, total = s["first_byte_p50_ms"], s["total_p50_ms"]
        print(f"{s['target']:24} {s['samples']:>7} {first:>19.2f} {total:>13.2f}")


def machine() -> str:
    impl = []
    for mod in ("uvloop", "httptools"):
        try:
            __import__(mod)
            impl.append(mod)
        except ImportError:
            impl.append(f"no {mod}")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{python}, {os.cpu_count()} CPUs, {', '.join(impl)}"


def main() -> None:
    p = argparse.ArgumentParser(description="Adapter overhead vs direct engine access.")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients for throughput")
    p.add_argument("--requests", type=int, default=3000, help="requests per measurement")
    p.add_argument("--duration", type=float, default=10.0, help="time limit per measurement (s)")
    p.add_argument("--service-ms", type=float, default=20.0, help="engine service time scenario")
    p.add_argument("--stream-chunks", type=int, default=10)
    p.add_argument("--stream-gap-ms", type=float, default=50.0)
    p.add_argument("--stream-samples", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args()

    engine_port, adapter_port = free_port(), free_port()
    engine_argv = [sys.executable, str(FAKE_ENGINE), "--port", str(engine_port)]
    engine = start([*engine_argv, "--served-model-name", MODEL], engine_port)
    try:
        adapter_argv = [sys.executable, "-m", "mdeploy.serve", "serve", "--host", "127.0.0.1"]
        adapter = start(
            [*adapter_argv, "--port", str(adapter_port)],
            adapter_port,
            {"MDEPLOY_ENGINE_URL": f"http://127.0.0.1:{engine_port}"},
        )
        try:
            pids = {"engine": engine.pid, "adapter": adapter.pid}
            report = run_all(args, engine_port, adapter_port, pids)
        finally:
            stop(adapter)
    finally:
        stop(engine)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


def run_all(args, engine_port: int, adapter_port: int, pids: dict[str, int]) -> dict:
    small = {"prompt": "hello", "model": MODEL, "max_tokens": 8}
    slow = {**small, "x_fake": {"delay": args.service_ms / 1000}}
    paths = [
        ("direct", engine_port, "/v1/completions"),
        ("adapter:/v1/completions", adapter_port, "/v1/completions"),
        ("adapter:/invocations", adapter_port, "/invocations"),
    ]
    scenarios = [
        ("small, engine instant", small, 1),
        (f"small, engine instant, {args.clients} clients", small, args.clients),
        (f"small, engine {args.service_ms:g} ms, {args.clients} clients", slow, args.clients),
    ]
    runs = [
        measure(name, target, port, request_bytes(path, body), args, clients, pids)
        for name, body, clients in scenarios
        for target, port, path in paths
    ]
    streaming = [measure_stream(target, port, path, args) for target, port, path in paths]
    return {
        "machine": machine(),
        "runs": [asdict(r) for r in runs],
        "comparison": compare(runs),
        "streaming": [asdict(s) for s in streaming],
        "stream_shape": {"chunks": args.stream_chunks, "gap_ms": args.stream_gap_ms},
    }


if __name__ == "__main__":
    main()
