"""
The Azure Machine Learning target (managed online endpoints).

`target.py` (light: the `Target` glue, `TARGET`), `rules.py` (Azure's name rules, secrets,
tags), `settings.py` (the `mdeploy:*` stack keys),
`component.py` (the Pulumi component `mdeploy:azure:Endpoint` and its `traffic` resource),
`ops.py` (status, traffic and invoke over plain HTTPS to ARM and the scoring URI),
`registry.py` (ACR repository naming and login). Nothing is imported here, so
`import mdeploy.targets.azure` costs nothing.
"""
