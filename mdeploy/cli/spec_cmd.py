"""
`mdeploy validate`, `mdeploy schema` and `mdeploy init`: the spec commands.

validate loads a spec (and an overlay), resolves the model's architecture from the
catalog and, for prod or `guardrails: strict`, applies the prod guardrails. Exit 2 for an
invalid spec, 4 for a guardrail refusal; `--json` prints the result on stdout either way.
The spec layer (pydantic, PyYAML) is imported inside the commands, so `mdeploy --help`
stays fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from mdeploy.cli._common import (
    EnvOption,
    JsonOption,
    SpecArg,
    cli_errors,
    console,
    err_console,
    params_text,
    print_json,
    redact,
    report_error,
)
from mdeploy.errors import GuardrailError, InputError, Issue, MdeployError, SpecError

if TYPE_CHECKING:
    from mdeploy.catalog.models import ModelArchitecture
    from mdeploy.spec import LoadedSpec
    from mdeploy.spec._yaml import Node

AllEnvsOption = Annotated[
    bool,
    typer.Option("--all-envs", help="Check the base spec and every environment overlay."),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Model id [dim](default: mistralai/Mistral-7B-Instruct-v0.3)[/]."
    ),
]
NameOption = Annotated[
    str | None,
    typer.Option("--name", "-n", help="Deployment name [dim](default: from the model id)[/]."),
]
ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing file.")]
InitPathArg = Annotated[
    Path | None,
    typer.Argument(
        help="Where to write the spec [dim](default: mdeploy.yaml)[/].",
        show_default=False,
        dir_okay=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add validate, schema and init to the root app."""
    app.command("validate")(validate)
    app.command("schema")(schema)
    app.command("init")(init)


def validate(
    spec: SpecArg,
    env: EnvOption = None,
    *,
    all_envs: AllEnvsOption = False,
    as_json: JsonOption = False,
) -> None:
    """
    Check a spec: fields, overlay, model architecture and, for [bold]prod[/], the guardrails.
    """
    with cli_errors(json_out=as_json):
        if all_envs and env:
            raise InputError("--env and --all-envs exclude each other", hint="pass one of them")
        outcomes = _outcomes(spec, env, all_envs=all_envs)
        if as_json:
            print_json(_payload(spec, env, outcomes, all_envs=all_envs))
        error = _combined(outcomes)
        if error is not None:  # the JSON above already holds the issues: stderr only
            raise typer.Exit(report_error(error))
        if not as_json:
            for outcome in outcomes:
                console.print(_ok_line(spec, outcome), soft_wrap=True)


def schema() -> None:
    """Print the spec's JSON Schema (for editors and CI linters)."""
    from mdeploy.spec import schema as spec_schema

    with cli_errors():
        print_json(spec_schema())


def init(
    path: InitPathArg = None,
    *,
    model: ModelOption = None,
    name: NameOption = None,
    force: ForceOption = False,
) -> None:
    """Write a commented starter spec that validates as written."""
    from mdeploy.spec.scaffold import (
        DEFAULT_MODEL,
        DEFAULT_SPEC_FILE,
        render_starter,
        write_starter,
    )

    with cli_errors():
        path = path or DEFAULT_SPEC_FILE
        text = render_starter(model_id=model or DEFAULT_MODEL, name=name, file=path.name)
        write_starter(path, text, force=force)
        outcome = _check(path, None)
        console.print(f"[green]✓[/] wrote {escape(str(path))}", soft_wrap=True)
        if outcome.error is not None:
            lead = f"[yellow]warning:[/] {escape(str(path))} does not validate yet: "
            err_console.print(lead + escape(outcome.error.message), soft_wrap=True)
            if outcome.error.hint:
                err_console.print(f"[dim]hint:[/] {escape(outcome.error.hint)}", soft_wrap=True)
        else:
            console.print(
                f"next: mdeploy validate {escape(str(path))}, mdeploy plan {escape(str(path))}"
            )


@dataclass
class _Outcome:
    """The result of checking one spec with one overlay (env None = the base)."""

    path: Path
    env: str | None
    loaded: LoadedSpec | None = None
    arch: ModelArchitecture | None = None
    error: MdeployError | None = None

    @property
    def issues(self) -> list[Issue]:
        if self.error is None:
            return []
        if isinstance(self.error, SpecError | GuardrailError):
            return self.error.issues
        return [Issue(str(self.path), None, None, "", self.error.message)]


def _check(path: Path, env: str | None) -> _Outcome:
    """Check `path` with overlay `env`; never raises MdeployError."""
    return _outcomes(path, env, all_envs=False)[0]


def _outcomes(path: Path, env: str | None, *, all_envs: bool) -> list[_Outcome]:
    """
    Read the file once, then check the base or `env`, or the base and every overlay.

    One read for all overlays keeps `--all-envs` linear in their number.
    """
    from mdeploy.spec._overlay import environment_names
    from mdeploy.spec._yaml import read_tree

    try:
        tree = read_tree(path)
    except MdeployError as exc:
        return [_Outcome(path, env, error=exc)]
    names = [None, *environment_names(tree)] if all_envs else [env]
    return [_check_tree(tree, path, name) for name in names]


def _check_tree(tree: Node, path: Path, env: str | None) -> _Outcome:
    """Load one overlay, run every offline check, then the guardrails when strict."""
    from mdeploy.spec import check_guardrails
    from mdeploy.spec.loader import load_from_tree

    try:
        loaded = load_from_tree(tree, path, env)
        arch = offline_checks(loaded)
        if loaded.strict:
            check_guardrails(loaded)
    except MdeployError as exc:
        return _Outcome(path, env, error=exc)
    return _Outcome(path, env, loaded, arch)


def offline_checks(loaded: LoadedSpec) -> ModelArchitecture:
    """
    Every check of the spec that needs no network, each located in the file (exit 2).

    Beyond the schema: the model resolves, and the planner's own spec checks — context
    within the model's trained length, no planner-owned engine flag, a known GPU for each
    pool without gpu_memory_gib. `plan` calls this too, so both report the same file:line.
    """
    arch = _resolve(loaded)
    issues = _plan_time_issues(loaded, arch)
    if issues:
        raise SpecError(issues, hint="fix the fields listed; `mdeploy schema` describes each")
    return arch


def _plan_time_issues(loaded: LoadedSpec, arch: ModelArchitecture) -> list[Issue]:
    from mdeploy.plan.engine import PLANNER_FLAGS

    spec, issues = loaded.spec, []
    limit = arch.max_position_embeddings
    if limit and spec.model.max_context > limit:
        issues.append(
            loaded.issue(
                "model.max_context",
                f"{spec.model.max_context} exceeds the {limit} tokens {spec.model.id} was "
                f"trained for; vLLM refuses to start: set it to at most {limit}",
            )
        )
    for flag in spec.serving.engine_args:
        if flag in PLANNER_FLAGS:
            message = f"set by the planner; set it through {PLANNER_FLAGS[flag]} instead"
            issues.append(loaded.issue(("serving", "engine_args", flag), message))
    return issues + _pool_issues(loaded)


def _pool_issues(loaded: LoadedSpec) -> list[Issue]:
    """A pool the planner would offer needs a GPU the catalog knows, or its gpu_memory_gib."""
    from mdeploy.catalog import gpu_memory_gib

    placement = loaded.spec.placement
    issues = []
    for key, cluster in placement.clusters().items():
        if key not in placement.clouds:
            continue
        for i, pool in enumerate(cluster.pools):
            if pool.gpu_memory_gib is not None:
                continue
            try:
                gpu_memory_gib(pool.gpu)
            except InputError as exc:
                message = f"{exc.message}; set gpu_memory_gib (usable GiB per GPU) for this pool"
                issues.append(loaded.issue(("placement", key, "pools", i, "gpu"), message))
    return issues


def _resolve(loaded: LoadedSpec) -> ModelArchitecture:
    """Resolve the architecture; an unknown model is a spec error at `model.id`."""
    from mdeploy.catalog import resolve_model

    try:
        return resolve_model(loaded.spec.model, base_dir=loaded.base_dir)
    except InputError as exc:
        message = exc.message.removeprefix("model.id: ")
        raise SpecError([loaded.issue("model.id", message)], hint=exc.hint) from None


def _labelled(outcomes: list[_Outcome]) -> list[tuple[str | None, Issue]]:
    """Every issue with its overlay; one that an earlier check found is listed once."""
    seen: set[Issue] = set()
    out = []
    for outcome in outcomes:
        for issue in outcome.issues:
            if issue not in seen:
                seen.add(issue)
                out.append((outcome.env, issue))
    return out


def _combined(outcomes: list[_Outcome]) -> MdeployError | None:
    """One error for all checks: a spec error (exit 2) outranks a guardrail refusal (4)."""
    failed = [o for o in outcomes if o.error is not None]
    if not failed:
        return None
    if len(outcomes) == 1:
        return failed[0].error
    issues = [
        Issue(i.file, i.line, i.column, i.field, f"[env {env}] {i.message}" if env else i.message)
        for env, i in _labelled(failed)
    ]
    if all(isinstance(o.error, GuardrailError) for o in failed):
        return GuardrailError(issues)
    hint = next((o.error.hint for o in failed if o.error is not None and o.error.hint), None)
    return SpecError(issues, hint=hint)


def _payload(
    path: Path, env: str | None, outcomes: list[_Outcome], *, all_envs: bool
) -> dict[str, Any]:
    """The `validate --json` document; the summary fields appear when a check passed."""
    if not all_envs:
        outcome = outcomes[0]
        issues = [_issue_dict(i) for i in outcome.issues]
        head = {"valid": not issues, "file": str(path), "env": env, "issues": issues}
        return head | _summary(outcome)
    issues = [{**_issue_dict(i), "env": e} for e, i in _labelled(outcomes)]
    results = [{"env": o.env, "valid": o.error is None} | _summary(o) for o in outcomes]
    return {
        "valid": not issues,
        "file": str(path),
        "env": None,
        "issues": issues,
        "results": results,
    }


def _issue_dict(issue: Issue) -> dict[str, Any]:
    """One issue for --json; a credential shape in its text is redacted, never printed."""
    return asdict(issue) | {"field": redact(issue.field), "message": redact(issue.message)}


def _summary(outcome: _Outcome) -> dict[str, Any]:
    if outcome.loaded is None or outcome.arch is None:
        return {}
    from mdeploy.spec import spec_hash

    spec = outcome.loaded.spec
    return {
        "name": spec.metadata.name,
        "model": {"id": spec.model.id, "params_b": outcome.arch.params_b},
        "strict": outcome.loaded.strict,
        "spec_hash": spec_hash(outcome.loaded),
    }


def _ok_line(path: Path, outcome: _Outcome) -> str:
    """The green one-line success message."""
    assert outcome.loaded is not None and outcome.arch is not None
    spec = outcome.loaded.spec
    where = f" (env {outcome.env})" if outcome.env else ""
    strict = ", prod guardrails pass" if outcome.loaded.strict else ""
    text = (
        f"✓ {path} valid{where}: {spec.metadata.name}, "
        f"model {spec.model.id} ({params_text(outcome.arch.params_b)} B){strict}"
    )
    return f"[green]{escape(text)}[/]"
