#!/bin/sh
# Entrypoint of the mdeploy inference image: locate (or fetch) the weights, then become the
# contract adapter, which starts vLLM itself.
#
# Where the weights are, first match wins:
#   MDEPLOY_MODEL                a path or Hugging Face id, used as is
#   Vertex AI                    AIP_STORAGE_URI (gs://...) is downloaded to MDEPLOY_WEIGHTS_DIR
#   Azure ML                     AZUREML_MODEL_DIR, mounted by the platform, when not empty
#   SageMaker                    /opt/ml/model (the unpacked ModelDataUrl), when not empty
#   Kubernetes, anything else    MDEPLOY_MODEL_SOURCE: hf://ORG/NAME (the engine downloads it,
#                                at MDEPLOY_MODEL_REVISION), s3:// or gs:// (downloaded here),
#                                or the path of a mounted volume
#   no source in the spec        MDEPLOY_MODEL_ID, a Hugging Face id the engine downloads
# In a mounted or downloaded tree the model is the shallowest folder holding config.json.
#
# SageMaker starts the container as `docker run IMAGE serve`: that argument is dropped, the
# rest go to the adapter. boot.py adds --model and the flags mapped from the environment to
# MDEPLOY_ENGINE_ARGS (a JSON list the adapter passes to vLLM).
#
# Secrets: the deployment passes references only, in MDEPLOY_SECRET_REFS (a JSON object
# ENV_NAME -> aws-sm:ARN | gcp-sm:projects/... | azure-kv:... | file:PATH). `boot.py exec`
# reads them with the platform's identity (execution role, service account, managed identity),
# sets the variables (one already set and not empty keeps its value), drops
# MDEPLOY_SECRET_REFS and exec()s the adapter, so the engine starts with e.g. HF_TOKEN set.
# Both steps are exec, so the adapter is PID 1: SIGTERM reaches it directly and it drains
# requests before the platform's SIGKILL. Nothing here prints a secret value.
set -eu

here=$(dirname "$0")

log() {
  printf 'mdeploy-entrypoint: %s\n' "$*" >&2
}

# The shallowest folder under $1 holding config.json (archives often wrap the model in a
# folder), else $1 itself.
model_root() {
  for depth in 1 2 3; do
    found=$(find "$1" -mindepth "$depth" -maxdepth "$depth" -name config.json -type f 2>/dev/null | sort | head -n 1)
    if [ -n "$found" ]; then
      dirname "$found"
      return 0
    fi
  done
  printf '%s\n' "$1"
}

fetch() {
  python3 "$here/boot.py" fetch "$1" "${MDEPLOY_WEIGHTS_DIR:-$HOME/weights}"
}

if [ "${1:-}" = "serve" ]; then
  shift
fi

sagemaker_dir=${MDEPLOY_SAGEMAKER_MODEL_DIR:-/opt/ml/model}

if [ -n "${MDEPLOY_MODEL:-}" ]; then
  platform=explicit
  model=$MDEPLOY_MODEL
elif [ -n "${AIP_STORAGE_URI:-}" ]; then
  platform=vertex
  fetched=$(fetch "$AIP_STORAGE_URI")
  model=$(model_root "$fetched")
elif [ -n "${AZUREML_MODEL_DIR:-}" ] && [ -n "$(ls -A "$AZUREML_MODEL_DIR" 2>/dev/null)" ]; then
  platform=azureml
  model=$(model_root "$AZUREML_MODEL_DIR")
elif [ -d "$sagemaker_dir" ] && [ -n "$(ls -A "$sagemaker_dir" 2>/dev/null)" ]; then
  platform=sagemaker
  model=$(model_root "$sagemaker_dir")
elif [ -n "${MDEPLOY_MODEL_SOURCE:-}" ]; then
  platform=source
  case $MDEPLOY_MODEL_SOURCE in
    hf://*)
      model=${MDEPLOY_MODEL_SOURCE#hf://}
      ;;
    s3://* | gs://*)
      fetched=$(fetch "$MDEPLOY_MODEL_SOURCE")
      model=$(model_root "$fetched")
      ;;
    *://*)
      log "MDEPLOY_MODEL_SOURCE: unsupported scheme; use hf://, s3://, gs:// or a path"
      exit 64
      ;;
    *)
      model=$(model_root "$MDEPLOY_MODEL_SOURCE")
      ;;
  esac
elif [ -n "${MDEPLOY_MODEL_ID:-}" ]; then
  # model.source is optional in the spec: every target then passes model.id only.
  platform=hub
  model=$MDEPLOY_MODEL_ID
else
  log "no model: set MDEPLOY_MODEL_SOURCE (hf://, s3://, gs:// or a mounted path) or MDEPLOY_MODEL_ID, or run on SageMaker, Vertex AI or Azure ML"
  exit 64
fi
log "model ($platform): $model"

MDEPLOY_ENGINE_ARGS=$(python3 "$here/boot.py" engine-args --model "$model")
export MDEPLOY_ENGINE_ARGS
exec python3 "$here/boot.py" exec -- python3 -m mdeploy.serve "$@"
