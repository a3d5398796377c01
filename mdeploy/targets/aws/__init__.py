"""
AWS SageMaker target: `target.py` (the Target), `rules.py` and `settings.py` (offline rules
and stack keys), `component.py` (Pulumi), `ops.py` (day-2 boto3 calls), `registry.py` (ECR).

Only the light `target` module is re-exported; Pulumi and boto3 load when first used.
"""

from mdeploy.targets.aws.settings import AwsSettings
from mdeploy.targets.aws.target import TARGET, AwsTarget

__all__ = ["TARGET", "AwsSettings", "AwsTarget"]
