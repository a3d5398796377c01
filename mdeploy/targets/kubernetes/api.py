"""
The Kubernetes API groups the component code uses, each with only the kinds it declares.

One place for the imports of component.py, podspec.py and lws.py: `import_only` loads these
kinds (and each group's shared argument types) instead of the whole API group, which for
core/v1 is 52 modules. Read `core.ServiceArgs` here exactly as from `pulumi_kubernetes.core.v1`.
"""

from __future__ import annotations

from mdeploy.targets._pulumi_imports import import_only

__all__ = ["apps", "autoscaling", "core", "meta", "networking", "policy"]

_K8S = "pulumi_kubernetes"
core = import_only(f"{_K8S}.core.v1", "Namespace", "ServiceAccount", "Secret", "Service")
apps = import_only(f"{_K8S}.apps.v1", "Deployment")
meta = import_only(f"{_K8S}.meta.v1")
networking = import_only(f"{_K8S}.networking.v1", "NetworkPolicy", "Ingress")
policy = import_only(f"{_K8S}.policy.v1", "PodDisruptionBudget")
autoscaling = import_only(f"{_K8S}.autoscaling.v2", "HorizontalPodAutoscaler")
