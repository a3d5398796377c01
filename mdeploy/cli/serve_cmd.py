"""
`mdeploy serve`: run the contract adapter (the inference image's server) from a terminal.

Thin on purpose: the adapter lives in `mdeploy.serve`, which this module imports only inside
the command, so `mdeploy --help` never loads uvicorn or httpx. The image itself runs
`python -m mdeploy.serve`, which needs neither typer nor rich.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from mdeploy.cli._common import cli_errors, console
from mdeploy.errors import InputError

PlatformOption = Annotated[
    str,
    typer.Option(
        "--platform",
        help="[bold]auto[/] (detect from the environment), sagemaker, vertex, azureml or plain.",
    ),
]
PortOption = Annotated[
    int | None, typer.Option("--port", help="Listen port (default: the platform's, 8080).")
]
HostOption = Annotated[
    str | None, typer.Option("--host", help="Bind address (default 0.0.0.0).", show_default=False)
]
EngineUrlOption = Annotated[
    str | None,
    typer.Option(
        "--engine-url", help="Use an engine that is already running; without it vLLM is started."
    ),
]
MaxBodyOption = Annotated[
    int | None, typer.Option("--max-body-bytes", help="Request size limit (default 6 MiB).")
]
GraceOption = Annotated[
    float | None,
    typer.Option("--grace", help="Seconds to drain in-flight requests on SIGTERM (default 25)."),
]


def register(app: typer.Typer) -> None:
    """Add `serve` to the root app."""
    app.command("serve")(serve)


def serve(
    *,
    platform: PlatformOption = "auto",
    port: PortOption = None,
    host: HostOption = None,
    engine_url: EngineUrlOption = None,
    max_body_bytes: MaxBodyOption = None,
    grace: GraceOption = None,
) -> None:
    """
    Serve SageMaker, Vertex AI, Azure ML and OpenAI routes in front of vLLM.

    Prints the platform it detected and the routes it serves, then runs until stopped.
    """
    with cli_errors():
        code = _run(platform, port, host, engine_url, max_body_bytes, grace)
    raise typer.Exit(code)


def _run(
    platform: str,
    port: int | None,
    host: str | None,
    engine_url: str | None,
    max_body_bytes: int | None,
    grace: float | None,
) -> int:
    import os

    from mdeploy.serve.config import ServeConfigError, load_config
    from mdeploy.serve.engine import EngineConfigError
    from mdeploy.serve.server import run

    try:
        config = load_config(
            os.environ,
            platform=platform,
            host=host,
            port=port,
            engine_url=engine_url,
            max_body_bytes=max_body_bytes,
            grace_seconds=grace,
        )
        return run(config, announce=_print_summary)
    except (ServeConfigError, EngineConfigError) as exc:
        raise InputError(str(exc)) from None


def _print_summary(lines: list[str]) -> None:
    for line in lines:
        name, _, rest = line.partition(": ")
        console.print(f"[bold]{escape(name)}[/]: {escape(rest)}", soft_wrap=True)
