"""
Deploying a spec: offline synth and the stack lifecycle (Pulumi Automation API).

- `program`: spec → plan → EndpointArgs → the target's component; stack naming.
- `mocks`: the recording mock engine that runs real component code offline.
- `synth`: the resource graph contract (`synth --json`), secrets masked.
- `manifests`: Kubernetes objects of a graph as YAML files, in apply order.
- `prereqs`: checks before a stack operation (Pulumi CLI, credentials, passphrase).
- `stack`: up / preview / destroy / status / outputs, with two-phase image shipping.
- `progress`: engine events rendered for a terminal or a CI log.

Nothing here imports Pulumi at module level except `mocks`; import submodules directly.
"""
