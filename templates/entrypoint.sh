#!/bin/sh
# Entrypoint of the mdeploy inference image: one exec into the start-up module, which finds
# (or fetches) the weights, builds the engine flags, reads the secret references and then
# execs the contract adapter (`python3 -m mdeploy.serve`), which starts vLLM itself.
#
# Where the weights are looked for, the engine flags, the secret references and the exit
# codes are documented once, in mdeploy/serve/boot.py (in the image under
# /opt/mdeploy/app/mdeploy/serve/). SageMaker starts the container as `docker run IMAGE serve`:
# boot drops that argument and passes the rest to the adapter.
#
# Every step is exec, so the adapter is PID 1: SIGTERM reaches it directly and it drains
# requests before the platform's SIGKILL. Nothing here prints a secret value.
set -eu
exec python3 -m mdeploy.serve.boot start "$@"
