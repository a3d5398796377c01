"""The echo `Target`: the light entry point `get_target("echo")` returns."""

from __future__ import annotations

from typing import Any, ClassVar

from mdeploy.targets.base import EndpointArgs, Ops, Target, repository_of


class EchoTarget(Target):
    """Deploys the Kubernetes component; its day-2 client echoes the stack outputs."""

    name: ClassVar[str] = "echo"
    display_name: ClassVar[str] = "Echo (throwaway test target)"
    catalog_targets: ClassVar[tuple[str, ...]] = ("echo",)
    pulumi_plugins: ClassVar[tuple[str, ...]] = ("kubernetes", "random")
    credentials_hint: ClassVar[str] = "nothing to set: echo never leaves the test"
    python_modules: ClassVar[tuple[str, ...]] = ("pulumi", "pulumi_kubernetes")
    registry_hosts: ClassVar[tuple[str, ...]] = (r"^echo\.registry\.test$",)
    output_names: ClassVar[tuple[str, ...]] = ("namespace", "service_name", "echo_note")

    def component(self, resource_name: str, args: EndpointArgs, opts: Any = None) -> Any:
        from mdeploy.targets.echo.component import EchoEndpoint

        return EchoEndpoint(resource_name, args, opts)

    def registry_repository(self, args: EndpointArgs, stack_config: dict[str, str]) -> str:
        del stack_config  # Unused: the image is pulled where it is.
        return repository_of(args.image)

    def check_credentials(self) -> tuple[bool, str]:
        return True, ""

    def stack_config(self, args: EndpointArgs) -> dict[str, str]:
        del args  # Unused: no provider config.
        return {}

    def ops(self, outputs: dict[str, Any]) -> Ops:
        from mdeploy.targets.echo.ops import EchoOps

        return EchoOps(outputs)

    def fake_outputs(
        self, typ: str, name: str, inputs: dict[str, Any], region: str
    ) -> dict[str, Any]:
        del inputs, region  # Unused.
        return {"echoed": name} if typ.startswith("mdeploy:echo:") else {}


TARGET = EchoTarget()
