"""
`mdeploy synth | up | preview | destroy | status | outputs`: the deploy verbs.

Thin wrappers over mdeploy.deploy; Pulumi and the cloud providers are imported inside the
commands, never at CLI start. `synth` is offline. The others drive the Pulumi CLI through the
Automation API; progress goes to stderr so `--json` on stdout stays one clean document.

`synth --json` prints one graph `{target, image, resources}` for a single target, and
`{"targets": [graph, ...], "skipped": [{target, reason}]}` with `--all-targets`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.tree import Tree

from mdeploy.cli._common import (
    EnvOption,
    JsonOption,
    SpecArg,
    TargetOption,
    YesOption,
    cli_errors,
    console,
    err_console,
    print_json,
)
from mdeploy.target_names import placement_names

if TYPE_CHECKING:
    from mdeploy.deploy.operation import Operation
    from mdeploy.deploy.progress import Progress
    from mdeploy.deploy.synth import SynthResult

__all__ = ["register"]

RequiredTarget = Annotated[
    str,
    typer.Option(
        "--target",
        "-t",
        help=f"Where: {', '.join(placement_names())}.",
        show_default=False,
    ),
]
AllTargetsOption = Annotated[
    bool, typer.Option("--all-targets", help="Every target the spec's placement.clouds reach.")
]
ConfigOption = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        "-c",
        help="Stack config KEY=VALUE, repeatable, e.g. -c mdeploy:awsAccountId=123456789012 "
        "(stored on the stack; for secrets use `pulumi config set --secret`).",
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Write <target>.json per target (and k8s manifests as YAML) here."),
]


def _interactive() -> bool:
    """Prompts are allowed: stdin is a terminal and this is not CI."""
    ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    return not ci and sys.stdin.isatty()


# --- synth -----------------------------------------------------------------------------------


def synth_cmd(
    spec: SpecArg,
    env: EnvOption = None,
    target: TargetOption = None,
    all_targets: AllTargetsOption = False,
    json_out: JsonOption = False,
    out: OutOption = None,
) -> None:
    """
    Show the resource graph each target's component declares, offline (no credentials).

    Runs the real Pulumi component code under a mock engine: an intended graph, not a preview.
    """
    with cli_errors(json_out=json_out):
        from mdeploy.deploy.synth import synth_targets
        from mdeploy.spec import load_spec

        results, skipped = synth_targets(load_spec(spec, env), target, all_targets=all_targets)
        if out is not None:
            _write_out(results, out)
        if json_out:
            graphs = [r.to_json() for r in results]
            print_json({"targets": graphs, "skipped": skipped} if all_targets else graphs[0])
        else:
            _render_synth(results, skipped, out)


def _write_out(results: list[SynthResult], out: Path) -> None:
    from mdeploy.deploy.manifests import write_graph
    from mdeploy.targets import get_target

    for result in results:
        graph = result.to_json()
        write_graph(graph, out)
        get_target(result.target).write_artifacts(out, graph)


def _render_synth(
    results: list[SynthResult], skipped: list[dict[str, str]], out: Path | None
) -> None:
    from mdeploy.deploy.synth import BANNER

    console.print(Panel(BANNER, style="cyan", expand=False))
    for result in results:
        c = result.resolved.candidate if result.resolved else None
        where = f" · {c.region} · {c.instance_type} ({c.gpu}×{c.gpu_count})" if c else ""
        tree = Tree(f"[bold]{result.target}[/]{escape(where)}")
        children: dict[str | None, list[dict[str, Any]]] = {}
        for r in result.resources:
            children.setdefault(r["parent"], []).append(r)
        _add_branch(tree, children, None)
        console.print(tree)
        console.print(f"  image    [bold]{escape(result.image)}[/]", soft_wrap=True)
        if result.outputs.get("endpoint_url"):
            url = str(result.outputs["endpoint_url"])
            console.print(f"  endpoint {escape(url)}", soft_wrap=True)
        for warning in result.warnings:
            console.print(f"  [yellow]warning[/] {escape(warning)}")
    for skip in skipped:
        console.print(f"[yellow]skipped[/] {skip['target']}: {escape(skip['reason'])}")
    if out is not None:
        console.print(f"[dim]written to {escape(str(out))}[/]")


def _add_branch(
    node: Tree, children: dict[str | None, list[dict[str, Any]]], parent: str | None
) -> None:
    for r in children.get(parent, []):
        branch = node.add(f"{escape(r['type'])} [bold]{escape(r['name'])}[/]")
        _add_branch(branch, children, r["urn"])


# --- lifecycle -------------------------------------------------------------------------------


def _operation(
    spec: Path,
    env: str | None,
    target: str,
    *,
    need_secrets: bool = False,
    config: list[str] | None = None,
    deploying: bool = False,
) -> Operation:
    from mdeploy.deploy.stack import prepare
    from mdeploy.spec import load_spec

    prompt = _passphrase_prompt if _interactive() else None
    loaded = load_spec(spec, env)
    return prepare(
        loaded, target, passphrase_prompt=prompt, need_secrets=need_secrets,
        config=_pairs(config or []), deploying=deploying,
    )  # fmt: skip


def _pairs(items: list[str]) -> dict[str, str]:
    """--config KEY=VALUE items as a dict."""
    from mdeploy.errors import InputError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--config {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def _passphrase_prompt() -> str:
    return typer.prompt(
        "Passphrase for the stack's encrypted state", hide_input=True, confirmation_prompt=True
    )


def _confirm() -> Any:
    return (lambda question: typer.confirm(question, default=False)) if _interactive() else None


def _progress(op: Operation, verb: str) -> Progress:
    from mdeploy.deploy.progress import Progress

    return Progress(err_console, title=f"{verb} {op.stack}")


def _report(summary: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(summary)
        return
    changes = ", ".join(f"{k} {v}" for k, v in sorted(summary.get("changes", {}).items()))
    console.print(
        f"[bold green]{summary['operation']} {summary['result']}[/] · {summary['stack']} · "
        f"{changes or 'no changes'} · {summary['duration_s']} s"
    )
    for key, value in (summary.get("outputs") or {}).items():
        console.print(f"  {key:<15} {escape(str(value))}")


def up_cmd(
    spec: SpecArg,
    target: RequiredTarget,
    env: EnvOption = None,
    yes: YesOption = False,
    json_out: JsonOption = False,
    config: ConfigOption = None,
    strict_quota: Annotated[
        bool, typer.Option("--strict-quota", help="Refuse when the quota cannot be read.")
    ] = False,
) -> None:
    """Deploy or update the endpoint: ship the image by digest, then apply the stack."""
    with cli_errors(json_out=json_out):
        from mdeploy.deploy.stack import up

        op = _operation(spec, env, target, need_secrets=True, config=config, deploying=True)
        with _progress(op, "up") as progress:
            summary = up(op, progress, yes=yes, confirm=_confirm(), strict_quota=strict_quota)
        _report(summary, json_out)


def preview_cmd(
    spec: SpecArg,
    target: RequiredTarget,
    env: EnvOption = None,
    json_out: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Ask the cloud what `up` would change (needs credentials; changes nothing)."""
    with cli_errors(json_out=json_out):
        from mdeploy.deploy.stack import preview

        op = _operation(spec, env, target, config=config, deploying=True)
        with _progress(op, "preview") as progress:
            summary = preview(op, progress)
        _report(summary, json_out)


def destroy_cmd(
    spec: SpecArg,
    target: RequiredTarget,
    env: EnvOption = None,
    yes: YesOption = False,
    json_out: JsonOption = False,
) -> None:
    """Delete every resource of the endpoint's stack (asks first unless --yes)."""
    with cli_errors(json_out=json_out):
        from mdeploy.deploy.stack import destroy

        op = _operation(spec, env, target)
        with _progress(op, "destroy") as progress:
            summary = destroy(op, progress, yes=yes, confirm=_confirm())
        _report(summary, json_out)


def status_cmd(
    spec: SpecArg,
    target: RequiredTarget,
    env: EnvOption = None,
    json_out: JsonOption = False,
) -> None:
    """Stack outputs and the endpoint's health."""
    with cli_errors(json_out=json_out):
        from mdeploy.deploy.stack import status

        report = status(_operation(spec, env, target))
        if json_out:
            print_json(report)
            return
        state = "deployed" if report["deployed"] else "not deployed"
        console.print(f"[bold]{report['stack']}[/] · {report['target']} · {state}")
        for key, value in report["outputs"].items():
            console.print(f"  {key:<15} {escape(str(value))}")
        for key, value in (report.get("health") or {}).items():
            console.print(f"  health.{key:<8} {escape(str(value))}", soft_wrap=True)


def outputs_cmd(
    spec: SpecArg,
    target: RequiredTarget,
    env: EnvOption = None,
    json_out: JsonOption = False,
) -> None:
    """The stack's outputs (secrets shown as [secret])."""
    with cli_errors(json_out=json_out):
        from mdeploy.deploy.stack import outputs

        values = outputs(_operation(spec, env, target))
        if json_out:
            print_json(values)
            return
        for key, value in values.items():
            console.print(f"{key:<15} {escape(str(value))}")


def _request_body(spec: Path, env: str | None, prompt: str, data: str | None) -> dict[str, Any]:
    """--data as JSON text or @file, else a one-message chat request for the spec's model."""
    import json

    from mdeploy.errors import InputError
    from mdeploy.spec import load_spec

    if data is not None:
        text = Path(data[1:]).read_text() if data.startswith("@") else data
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise InputError(f"--data: not JSON ({exc})") from None
        if not isinstance(body, dict):
            raise InputError("--data: expected a JSON object (an OpenAI request body)")
        return body
    from mdeploy.deploy.program import canonical_model_id  # what --served-model-name says

    model = canonical_model_id(load_spec(spec, env))
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 32}


def invoke_cmd(
    spec: SpecArg,
    target: RequiredTarget,
    env: EnvOption = None,
    prompt: Annotated[
        str, typer.Option("--prompt", "-p", help="Chat message to send.")
    ] = "Reply with one word: ready.",
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="A whole OpenAI request body: JSON, or @file."),
    ] = None,
    stream: Annotated[bool, typer.Option("--stream", help="Stream the reply (SSE).")] = False,
    json_out: JsonOption = False,
) -> None:
    """Send one request through the deployed endpoint: the smoke test after `up`."""
    with cli_errors(json_out=json_out):
        from mdeploy.deploy.stack import invoke

        body = _request_body(spec, env, prompt, data)
        if stream:
            body["stream"] = True
        reply = invoke(_operation(spec, env, target), body, stream=stream)
        if isinstance(reply, bytes | str):
            reply = [reply]
        if json_out:
            print_json(_reply_json(target, reply, stream=stream))
            return
        for chunk in reply:
            text = chunk.decode(errors="replace") if isinstance(chunk, bytes) else str(chunk)
            sys.stdout.write(text)
            sys.stdout.flush()
        if not stream:
            sys.stdout.write("\n")


def _reply_json(target: str, reply: Any, *, stream: bool) -> dict[str, Any]:
    """`invoke --json`: the endpoint's reply as JSON when it is JSON, else its text."""
    import json

    chunks = [c.decode(errors="replace") if isinstance(c, bytes) else str(c) for c in reply]
    text = "".join(chunks)
    try:
        body: Any = json.loads(text) if not stream else None
    except ValueError:
        body = None
    return {"target": target, "stream": stream, "reply": body if body is not None else text}


def register(app: typer.Typer) -> None:
    """Add the deploy commands to the root app."""
    app.command("synth")(synth_cmd)
    app.command("up")(up_cmd)
    app.command("preview")(preview_cmd)
    app.command("destroy")(destroy_cmd)
    app.command("status")(status_cmd)
    app.command("outputs")(outputs_cmd)
    app.command("invoke")(invoke_cmd)
