#!/usr/bin/env bash
# Install the system tools the test suite runs for real: skopeo, buildah and the Debian
# `docker-registry` (Distribution v2), plus checkov in a venv of its own (its pins clash
# with pulumi's). Idempotent; tests start the services themselves on 127.0.0.1.
set -euo pipefail

need=()
command -v skopeo >/dev/null || need+=(skopeo)
command -v buildah >/dev/null || need+=(buildah)
command -v docker-registry >/dev/null || need+=(docker-registry)
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

checkov_home="${MDEPLOY_CHECKOV_VENV:-$HOME/.cache/mdeploy/checkov-venv}"
if [ ! -x "$checkov_home/bin/checkov" ]; then
  python3 -m venv "$checkov_home"
  "$checkov_home/bin/pip" install -q --disable-pip-version-check checkov 2>&1 | { grep -v "^WARNING: Location" || true; }
fi
echo "tools ready: $(skopeo --version | head -1); $(buildah --version); checkov $("$checkov_home/bin/checkov" --version)"
