"""
AWS SageMaker target: `target.py` (offline rules and the Target), `component.py` (Pulumi),
`ops.py` (day-2 boto3 calls), `registry.py` (ECR login and repository naming).

Only the light `target` module is re-exported; Pulumi and boto3 load when first used.
"""

from mdeploy.targets.aws.target import TARGET, AwsSettings, AwsTarget

__all__ = ["TARGET", "AwsSettings", "AwsTarget"]
