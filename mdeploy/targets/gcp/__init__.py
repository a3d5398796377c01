"""
The Google Vertex AI target.

`target.py` (light: the `Target` glue, `TARGET`), `rules.py` (names, labels, checks),
`settings.py` (the `mdeploy:*` stack keys), `component.py` (the Pulumi
component `mdeploy:gcp:Endpoint`), `vertex_model.py` (the dynamic provider that uploads and
deploys the model), `ops.py` (status, invoke, traffic over REST), `registry.py` (Artifact
Registry paths and login). Nothing is imported here, so `import mdeploy.targets.gcp` is free.
"""
