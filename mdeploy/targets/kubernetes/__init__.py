"""
Kubernetes / CoreWeave target: a Deployment of the mdeploy image on GPU nodes.

`target.py` is the light entry point (`TARGET`); `component.py` holds the Pulumi component
and is imported only when a program runs; `ops.py` probes a deployed endpoint over HTTP.
"""
