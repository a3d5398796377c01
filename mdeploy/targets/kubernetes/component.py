"""
The Kubernetes / CoreWeave endpoint as one Pulumi ComponentResource, with typed k8s classes.

What it declares (all children parented to the component, short local names):
Namespace (optional), ServiceAccount, Secret(s) for `env:`/`file:` secret references and the
generated API key, Deployment, Service (ClusterIP), PodDisruptionBudget, NetworkPolicy,
HorizontalPodAutoscaler (autoscaling/v2, only when replicas.max > replicas.min) and Ingress
(only with `mdeploy:ingressHost`).

Secrets: `k8s:SECRET/KEY` references become `valueFrom.secretKeyRef` on the existing Secret;
`env:NAME` and `file:PATH` are read on the deployer's machine at `up` time and land in a
Secret whose data is a Pulumi secret. No value is ever an inline env value.

Stack config (`pulumi config set mdeploy:<key>`): every key optional, declared, documented and
checked by `settings.KubernetesSettings` (an unknown `mdeploy:*` key is refused).
"""

from __future__ import annotations

import pulumi
from pulumi_kubernetes.provider import Provider

from mdeploy.errors import InputError
from mdeploy.targets._config import stack_values
from mdeploy.targets.base import EndpointArgs, image_with_registry, repository_of
from mdeploy.targets.kubernetes import lws
from mdeploy.targets.kubernetes.api import apps, autoscaling, core, meta, networking, policy
from mdeploy.targets.kubernetes.podspec import (
    PORT,
    deployment_spec,
    pod_labels,
    selector_labels,
)
from mdeploy.targets.kubernetes.rules import NATIVE_REFS
from mdeploy.targets.kubernetes.settings import KubernetesSettings

__all__ = ["TYPE_TOKEN", "KubernetesEndpoint"]

TYPE_TOKEN = "mdeploy:kubernetes:Endpoint"


class KubernetesEndpoint(pulumi.ComponentResource):
    """A vLLM endpoint on a Kubernetes GPU cluster (CoreWeave or your own)."""

    endpoint_name: pulumi.Output[str]
    endpoint_url: pulumi.Output[str]
    image: pulumi.Output[str]
    repository_url: pulumi.Output[str]
    namespace: pulumi.Output[str]
    service_name: pulumi.Output[str]
    api_key: pulumi.Output[str] | None  # generated key (secret) when auth is key

    def __init__(
        self, name: str, args: EndpointArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, {}, opts)
        settings = KubernetesSettings.from_stack(stack_values())
        _check_supported(args, settings)
        self.repository = None  # No registry resource: images live in an existing registry.
        self.api_key = None
        child = pulumi.ResourceOptions(parent=self)
        if args.extra.get("kube_context"):
            provider = Provider("provider", context=args.extra["kube_context"], opts=child)
            child = pulumi.ResourceOptions(parent=self, provider=provider)

        repo = settings.registry or repository_of(args.image)
        image = image_with_registry(args.image, repo)
        labels = selector_labels(args)
        ns = self._namespace(args, settings, child)

        account = core.ServiceAccount(
            "sa",
            metadata=_meta(args.name, ns, labels),
            automount_service_account_token=False,
            opts=child,
        )
        env = self._secret_env(args, ns, labels, child)
        meta_ = _meta(args.name, ns, {**labels, **pod_labels(args)})
        if lws.is_multi_node(args):  # a replica larger than a node (issue 14): lws.py
            deployment = lws.leader_worker_set(
                args, settings, image, account.metadata.name, env, meta_, labels, child
            )
        else:
            deployment = apps.Deployment(
                "deployment",
                metadata=meta_,
                spec=deployment_spec(args, settings, image, account.metadata.name, env),
                opts=child,
            )
        service = core.Service(
            "service",
            metadata=_meta(args.name, ns, labels),
            spec=core.ServiceSpecArgs(
                type="ClusterIP",
                selector=lws.leader_selector(args, labels),
                ports=[core.ServicePortArgs(name="http", port=80, target_port="http")],
            ),
            opts=child,
        )
        self._policies(args, settings, ns, labels, deployment, child)
        url = self._ingress(args, settings, ns, labels, service, child)

        self.endpoint_name = deployment.metadata.name
        self.service_name = service.metadata.name
        self.namespace = pulumi.Output.from_input(ns)
        self.endpoint_url = url or pulumi.Output.concat(
            "http://", service.metadata.name, ".", self.namespace, ".svc.cluster.local"
        )
        self.image = pulumi.Output.from_input(image)
        self.repository_url = pulumi.Output.from_input(repo)
        outputs = {
            "endpoint_name": self.endpoint_name,
            "endpoint_url": self.endpoint_url,
            "image": self.image,
            "repository_url": self.repository_url,
            "namespace": self.namespace,
            "service_name": self.service_name,
        }
        if self.api_key is not None:
            outputs["api_key"] = self.api_key
        self.register_outputs(outputs)

    def _namespace(
        self, args: EndpointArgs, settings: KubernetesSettings, opts: pulumi.ResourceOptions
    ) -> pulumi.Input[str]:
        """Create the namespace (Pod Security 'restricted') unless told it exists."""
        name = str(args.extra.get("namespace") or "mdeploy")
        if settings.create_namespace is False:
            return name
        ns = core.Namespace(
            "namespace",
            metadata=meta.ObjectMetaArgs(
                name=name,
                labels={
                    "app.kubernetes.io/managed-by": "mdeploy",
                    "pod-security.kubernetes.io/enforce": "restricted",
                },
            ),
            opts=opts,
        )
        return ns.metadata.name

    def _secret_env(
        self,
        args: EndpointArgs,
        ns: pulumi.Input[str],
        labels: dict[str, str],
        opts: pulumi.ResourceOptions,
    ) -> list[core.EnvVarArgs]:
        """Env vars for secrets: references to k8s Secrets, never inline values."""
        env: list[core.EnvVarArgs] = []
        local: dict[str, pulumi.Output[str]] = {}
        for var, ref in sorted(args.secrets.items()):
            kind, _, rest = ref.partition(":")
            if kind == "k8s":
                secret, _, key = rest.partition("/")
                env.append(_secret_ref(var, secret, key))
            else:
                local[var] = pulumi.Output.secret(_read_local(kind, rest))
        if args.auth == "key" and "VLLM_API_KEY" not in args.secrets:
            from pulumi_random import RandomPassword

            key = RandomPassword("api-key", length=48, special=False, opts=opts)
            # Secret in state already (additionalSecretOutputs); explicit so it never leaks.
            self.api_key = pulumi.Output.secret(key.result)
            local["VLLM_API_KEY"] = self.api_key
        if local:
            secret = core.Secret(
                "secrets",
                metadata=_meta(f"{args.name}-secrets", ns, labels),
                type="Opaque",
                string_data=local,
                opts=opts,
            )
            env += [_secret_ref(var, secret.metadata.name, var) for var in sorted(local)]
        return env

    def _policies(
        self,
        args: EndpointArgs,
        settings: KubernetesSettings,
        ns: pulumi.Input[str],
        labels: dict[str, str],
        deployment: apps.Deployment | lws.Workload,
        opts: pulumi.ResourceOptions,
    ) -> None:
        """PDB and NetworkPolicy always; an HPA when the spec allows more replicas."""
        selector = meta.LabelSelectorArgs(match_labels=labels)
        policy.PodDisruptionBudget(
            "pdb",
            metadata=_meta(args.name, ns, labels),
            spec=policy.PodDisruptionBudgetSpecArgs(max_unavailable=1, selector=selector),
            opts=opts,
        )
        allowed = list(settings.allowed_namespaces)
        sources = [
            networking.NetworkPolicyPeerArgs(
                namespace_selector=meta.LabelSelectorArgs(
                    match_expressions=[
                        meta.LabelSelectorRequirementArgs(
                            key="kubernetes.io/metadata.name", operator="In", values=allowed
                        )
                    ]
                )
            )
        ]
        networking.NetworkPolicy(
            "netpol",
            metadata=_meta(args.name, ns, labels),
            spec=networking.NetworkPolicySpecArgs(
                pod_selector=selector,
                policy_types=["Ingress"],
                ingress=[
                    networking.NetworkPolicyIngressRuleArgs(
                        ports=[networking.NetworkPolicyPortArgs(port=PORT, protocol="TCP")],
                        from_=sources if allowed else None,
                    )
                ],
            ),
            opts=opts,
        )
        if args.replicas_max > args.replicas_min:
            autoscaling.HorizontalPodAutoscaler(
                "hpa",
                metadata=_meta(args.name, ns, labels),
                spec=autoscaling.HorizontalPodAutoscalerSpecArgs(
                    scale_target_ref=autoscaling.CrossVersionObjectReferenceArgs(
                        api_version=lws.workload_ref(args)[0],
                        kind=lws.workload_ref(args)[1],
                        name=deployment.metadata.name,
                    ),
                    min_replicas=args.replicas_min,
                    max_replicas=args.replicas_max,
                    metrics=[_hpa_metric(settings)],
                ),
                opts=opts,
            )

    def _ingress(
        self,
        args: EndpointArgs,
        settings: KubernetesSettings,
        ns: pulumi.Input[str],
        labels: dict[str, str],
        service: core.Service,
        opts: pulumi.ResourceOptions,
    ) -> pulumi.Output[str] | None:
        """An Ingress when `mdeploy:ingressHost` is set; returns its URL."""
        host = settings.ingress_host
        if not host:
            return None
        tls_secret = settings.ingress_tls_secret
        networking.Ingress(
            "ingress",
            metadata=_meta(args.name, ns, labels, annotations=ingress_annotations(args, settings)),
            spec=networking.IngressSpecArgs(
                ingress_class_name=settings.ingress_class or "nginx",
                tls=[networking.IngressTLSArgs(hosts=[host], secret_name=tls_secret)]
                if tls_secret
                else None,
                rules=[
                    networking.IngressRuleArgs(
                        host=host,
                        http=networking.HTTPIngressRuleValueArgs(
                            paths=[
                                networking.HTTPIngressPathArgs(
                                    path="/",
                                    path_type="Prefix",
                                    backend=networking.IngressBackendArgs(
                                        service=networking.IngressServiceBackendArgs(
                                            name=service.metadata.name,
                                            port=networking.ServiceBackendPortArgs(name="http"),
                                        )
                                    ),
                                )
                            ]
                        ),
                    )
                ],
            ),
            opts=opts,
        )
        return pulumi.Output.from_input(f"{'https' if tls_secret else 'http'}://{host}")


def ingress_annotations(args: EndpointArgs, settings: KubernetesSettings) -> dict[str, str]:
    """ingress-nginx settings: long reads for generation, the 6 MB body limit, auth."""
    notes = {
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "600",
        "nginx.ingress.kubernetes.io/proxy-send-timeout": "600",
        "nginx.ingress.kubernetes.io/proxy-body-size": "6m",
        "nginx.ingress.kubernetes.io/proxy-buffering": "off",  # stream SSE tokens as they come
    }
    auth_url = settings.ingress_auth_url
    if auth_url:
        notes["nginx.ingress.kubernetes.io/auth-url"] = auth_url
    if args.auth == "key":
        # The engine checks the API key itself (VLLM_API_KEY); nginx forwards Authorization.
        notes["mdeploy.io/auth"] = "api-key checked by the engine"
    return notes


def _hpa_metric(settings: KubernetesSettings) -> autoscaling.MetricSpecArgs:
    """CPU utilization works with metrics-server alone; a Pods metric needs an adapter."""
    pods_metric = settings.hpa_pods_metric
    if pods_metric:
        return autoscaling.MetricSpecArgs(
            type="Pods",
            pods=autoscaling.PodsMetricSourceArgs(
                metric=autoscaling.MetricIdentifierArgs(name=pods_metric),
                target=autoscaling.MetricTargetArgs(
                    type="AverageValue", average_value=settings.hpa_target or "4"
                ),
            ),
        )
    return autoscaling.MetricSpecArgs(
        type="Resource",
        resource=autoscaling.ResourceMetricSourceArgs(
            name="cpu",
            target=autoscaling.MetricTargetArgs(
                type="Utilization", average_utilization=int(settings.hpa_target or 70)
            ),
        ),
    )


def _secret_ref(var: str, secret: pulumi.Input[str], key: str) -> core.EnvVarArgs:
    return core.EnvVarArgs(
        name=var,
        value_from=core.EnvVarSourceArgs(
            secret_key_ref=core.SecretKeySelectorArgs(name=secret, key=key)
        ),
    )


def _read_local(kind: str, where: str) -> str:
    """The value behind an env:/file: reference on the deployer's machine ('' when absent)."""
    from mdeploy.targets._secrets import read_local_secret

    return read_local_secret(kind, where) or ""


def _check_supported(args: EndpointArgs, settings: KubernetesSettings) -> None:
    """Refuse what the cluster cannot honour, naming the field and the fix."""
    bad = sorted(v for v, ref in args.secrets.items() if not ref.startswith(NATIVE_REFS))
    if bad:
        raise InputError(
            f"serving.secrets.{bad[0]}: cloud secret managers are not reachable from kubernetes",
            hint="use k8s:SECRET/KEY (e.g. synced by External Secrets Operator), env:NAME "
            "or file:PATH",
        )
    # The auth URL acts only through the Ingress: without a host there is none, and the
    # endpoint would be served with no authentication at all.
    if args.auth == "iam" and not (settings.ingress_auth_url and settings.ingress_host):
        raise InputError(
            "serving.auth: iam on kubernetes needs an Ingress with an external auth service",
            hint="pulumi config set mdeploy:ingressHost <host> and mdeploy:ingressAuthUrl <url>, "
            "or use auth: key",
        )


def _meta(
    name: str,
    ns: pulumi.Input[str],
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
) -> meta.ObjectMetaArgs:
    return meta.ObjectMetaArgs(name=name, namespace=ns, labels=labels, annotations=annotations)
