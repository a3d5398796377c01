"""
`mdeploy image build|replicate|verify`: make the inference image, ship it by digest to each
cloud's registry, and prove a registry holds exactly that image.

Thin commands: parse flags, call one `mdeploy.image` function, render text or the `--json`
contract. `mdeploy.image` (and the spec loader) are imported inside the commands so
`mdeploy --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from mdeploy.cli._common import (
    EnvOption,
    JsonOption,
    cli_errors,
    console,
    err_console,
    print_json,
    report_error,
)

if TYPE_CHECKING:
    from mdeploy.image import BuildResult, ReplicationResult

image_app = typer.Typer(
    name="image",
    help="Build the inference image, replicate it [bold]by digest[/] to registries, verify copies.",
    rich_markup_mode="rich",
    no_args_is_help=True,
)

InsecureOption = Annotated[
    bool,
    typer.Option("--insecure", help="Plain HTTP / unverified TLS to the registries (local tests)."),
]
SpecOption = Annotated[
    Path | None,
    typer.Option(
        "--spec",
        "-s",
        help="Deployment spec; prod guardrails apply with --env prod.",
        dir_okay=False,
    ),
]


@image_app.command("build")
def build(
    *,
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="Local name of the image.")] = None,
    base: Annotated[
        str | None, typer.Option("--base", help="Base image (default: the pinned vLLM digest).")
    ] = None,
    spec: SpecOption = None,
    env: EnvOption = None,
    tool: Annotated[
        str | None, typer.Option("--tool", help="buildah, podman or docker (default: first found).")
    ] = None,
    isolation: Annotated[
        str, typer.Option("--isolation", help="buildah/podman isolation: chroot, oci, rootless.")
    ] = "chroot",
    push: Annotated[
        str | None, typer.Option("--push", help="Push to this registry reference.")
    ] = None,
    insecure: InsecureOption = False,
    emit_context: Annotated[
        Path | None,
        typer.Option(
            "--emit-context", help="Only write the build context to this folder.", file_okay=False
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Build the image (vLLM + contract adapter); [bold]--spec[/] fills the model labels."""
    with cli_errors(json_out=json_out):
        if emit_context is not None:
            _emit_context(emit_context, json_out)
            return
        result = _build(tag, base, spec, env, tool, isolation, push, insecure)
        if json_out:
            print_json(result.to_json())
        else:
            _show_build(result)


@image_app.command("replicate")
def replicate(
    source: Annotated[
        str, typer.Argument(help="Image to copy: registry ref or skopeo transport ref.")
    ],
    *,
    to: Annotated[
        list[str], typer.Option("--to", help="Destination (repeatable); a tag or @sha256 digest.")
    ],
    insecure: InsecureOption = False,
    spec: SpecOption = None,
    env: EnvOption = None,
    json_out: JsonOption = False,
) -> None:
    """Copy an image to registries by digest ([bold]skopeo[/]) and verify every copy."""
    from mdeploy.image import DigestMismatchError
    from mdeploy.image import replicate as do_replicate

    with cli_errors(json_out=json_out):
        strict = _strict(spec, env)
        try:
            result = do_replicate(source, to, insecure=insecure, strict=strict)
        except DigestMismatchError as exc:
            if json_out:  # the result is the JSON document: no second, error one
                print_json(exc.result.to_json())
                raise typer.Exit(report_error(exc)) from None
            raise
        if json_out:
            print_json(result.to_json())
        else:
            _show_replication(result)


@image_app.command("verify")
def verify(
    ref: Annotated[
        str, typer.Argument(help="Image to check: registry ref or skopeo transport ref.")
    ],
    *,
    digest: Annotated[str, typer.Option("--digest", help="Expected digest, sha256:<64 hex>.")],
    insecure: InsecureOption = False,
    json_out: JsonOption = False,
) -> None:
    """Exit 0 when REF holds exactly the image DIGEST names (every blob hashed), 1 when not.

    Exit 3 when the registry cannot be reached.
    """
    from mdeploy.image import DigestMismatchError, verify_image

    with cli_errors(json_out=json_out):
        try:
            check = verify_image(ref, digest, insecure=insecure)
        except DigestMismatchError as exc:
            if json_out:  # the result is the JSON document: no second, error one
                print_json(exc.result.to_json())
                raise typer.Exit(report_error(exc)) from None
            raise
        if json_out:
            print_json(check.to_json())
        else:
            console.print(
                f"[green]verified[/] {escape(check.ref)} is {check.digest} ({check.media_type}; "
                f"{check.blobs_checked} blobs hashed)"
            )


def _build(
    tag: str | None,
    base: str | None,
    spec: Path | None,
    env: str | None,
    tool: str | None,
    isolation: str,
    push: str | None,
    insecure: bool,
) -> BuildResult:
    from mdeploy.image import BuildRequest, ImageLabels, build_image
    from mdeploy.image.build import DEFAULT_TAG

    labels, strict = ImageLabels.from_spec(spec, env) if spec else (ImageLabels(), False)
    request = BuildRequest(
        tag=tag or DEFAULT_TAG,
        base=base,
        tool=tool,
        isolation=isolation,
        labels=labels,
        push=push,
        insecure=insecure,
        strict=strict,
    )
    with err_console.status("building the image…"):
        return build_image(request)


def _emit_context(folder: Path, json_out: bool) -> None:
    from mdeploy.image import assemble_context

    path = assemble_context(folder)
    if json_out:
        print_json({"context": str(path)})
    else:
        console.print(f"build context written to {escape(str(path))}")


def _strict(spec: Path | None, env: str | None) -> bool:
    """Prod guardrails apply: the spec says so, or --env prod."""
    if spec is None:
        return env == "prod"
    from mdeploy.spec import load_spec

    return load_spec(spec, env=env).strict


def _show_build(result: BuildResult) -> None:
    console.print(
        f"[green]built[/] {escape(result.tag)} with {result.tool} in {result.seconds:.1f} s"
    )
    console.print(f"  image id  {result.image_id}")
    if result.digest:
        console.print(f"  digest    {result.digest} (local)")
    console.print(f"  base      {escape(result.base)}")
    if result.pushed:
        console.print(f"  pushed    {escape(result.pushed)} → {result.pushed_digest}")
        if result.pushed_media_type:
            console.print(f"  manifest  {result.pushed_media_type}")


def _show_replication(result: ReplicationResult) -> None:
    console.print(f"source {escape(result.source)}")
    console.print(f"digest {result.digest} ({result.media_type})")
    for copy in result.copies:
        mark = "[green]verified[/]" if copy.verified else "[red]MISMATCH[/]"
        console.print(f"  {mark} {escape(copy.pinned or copy.ref)}")
    console.print(f"{len(result.copies)} copies in {result.seconds:.1f} s")


def register(app: typer.Typer) -> None:
    """Add `mdeploy image ...` to the root app."""
    app.add_typer(image_app, name="image")
