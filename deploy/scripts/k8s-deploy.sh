#!/usr/bin/env bash
# Rolls an image of the gateway out on Kubernetes, migrations first:
#   1. the ConfigMap; the Secret `vllm-chat-gateway` must already exist (examples/secret.example.yaml);
#   2. a migration Job (jobs/migrate.yaml) with that image, waited for: if it fails, nothing else changes;
#   3. the Deployment with that image, the Service, HPA, PDB and Ingress; then waits for the rollout.
# Usage: deploy/scripts/k8s-deploy.sh IMAGE [kubectl flags, e.g. --namespace gateway --context prod]
set -euo pipefail

image="${1:?usage: k8s-deploy.sh IMAGE [kubectl flags…]}"
shift
kube=(kubectl "$@")
manifests="$(cd "$(dirname "$0")/../kubernetes" && pwd)"
migration_timeout_seconds="${MIGRATION_TIMEOUT_SECONDS:-600}"

echo "== configuration"
"${kube[@]}" apply -f "$manifests/configmap.yaml"
if ! "${kube[@]}" get secret vllm-chat-gateway >/dev/null; then
  echo "The Secret vllm-chat-gateway is missing: create it first (deploy/kubernetes/examples/secret.example.yaml)." >&2
  exit 1
fi

echo "== migrations with $image"
# --local: the image is set on the file's content, without asking the cluster.
job="$(kubectl set image --local -f "$manifests/jobs/migrate.yaml" "migrate=$image" -o yaml | "${kube[@]}" create -f - -o name)"
echo "   $job"
deadline=$((SECONDS + migration_timeout_seconds))
state=""
while [ "$SECONDS" -lt "$deadline" ]; do
  state="$("${kube[@]}" get "$job" -o jsonpath='{.status.conditions[?(@.status=="True")].type}')"
  case "$state" in
    *Complete*|*Failed*) break ;;
  esac
  sleep 5
done
"${kube[@]}" logs "$job" --all-containers --tail=100 || true
case "$state" in
  *Complete*) echo "   migrations applied" ;;
  *)
    echo "The migration Job did not complete (${state:-still running after ${migration_timeout_seconds}s}): the gateway was not rolled out." >&2
    exit 1
    ;;
esac

echo "== gateway $image"
kubectl set image --local -f "$manifests/deployment.yaml" "gateway=$image" -o yaml | "${kube[@]}" apply -f -
for manifest in service.yaml hpa.yaml pdb.yaml ingress.yaml; do
  "${kube[@]}" apply -f "$manifests/$manifest"
done
"${kube[@]}" rollout status deployment/vllm-chat-gateway --timeout=20m
