"""
The echo target: a throwaway fifth target written from docs/adding-a-target.md.

Copied by tests/contract/test_target_contract.py into a temporary folder that joins
`mdeploy.targets.__path__`, so it plugs in as `mdeploy.targets.echo` with no file outside
its own folder touched. Its Pulumi component is the Kubernetes one (a real target would
share code through `mdeploy/targets/*.py`, never by importing a sibling folder).
"""
