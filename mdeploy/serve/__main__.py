"""
`python -m mdeploy.serve`: the inference image's entrypoint (argparse only, no typer/rich).

SageMaker starts the image as `docker run <image> serve`, so a lone `serve` argument is
accepted, and taken as the sign of SageMaker when the platform is auto-detected.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mdeploy.serve.config import ServeConfigError, load_config
from mdeploy.serve.contract import PLATFORMS
from mdeploy.serve.engine import EngineConfigError

EXIT_INPUT = 2  # the same code `mdeploy` uses for bad flags
EXIT_PREREQUISITE = 3  # and for a missing prerequisite


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mdeploy.serve",
        description="Serve every cloud's inference contract in front of vLLM's OpenAI server.",
    )
    p.add_argument("mode", nargs="?", choices=["serve"], help="SageMaker passes `serve`")
    p.add_argument("--platform", choices=["auto", *PLATFORMS], default=None)
    p.add_argument("--host", default=None, help="bind address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="default: the platform's port")
    p.add_argument("--engine-url", default=None, help="use a running engine; start none")
    p.add_argument("--max-body-bytes", type=int, default=None, help="default 6 MiB")
    p.add_argument("--grace", type=float, default=None, help="drain seconds on SIGTERM")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from mdeploy.serve.server import run

    try:
        config = load_config(
            os.environ,
            [args.mode] if args.mode else [],
            platform=args.platform,
            host=args.host,
            port=args.port,
            engine_url=args.engine_url,
            max_body_bytes=args.max_body_bytes,
            grace_seconds=args.grace,
        )
        return run(config)
    except (ServeConfigError, EngineConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except ModuleNotFoundError as exc:  # uvicorn: in the image, and in the `serve` extra
        print(
            f"error: {exc.name} is not installed; the adapter needs it\n"
            "hint: pip install 'mdeploy[serve]'",
            file=sys.stderr,
        )
        return EXIT_PREREQUISITE


if __name__ == "__main__":
    sys.exit(main())
