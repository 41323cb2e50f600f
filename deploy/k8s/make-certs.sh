#!/usr/bin/env bash
# Writes deploy/k8s/certs: a dev mesh CA and one certificate per StatefulSet pod (granary-0..N-1),
# for kustomization.yaml's Secret. For production, issue the same shape from your own CA: one
# URI SAN spiffe://granary/node/<pod name>, serverAuth+clientAuth, DNS SANs for the headless
# Service and the pod's own name. The CA key is NOT put into the Secret.
#   deploy/k8s/make-certs.sh [REPLICAS] [NAMESPACE]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
replicas="${1:-3}"
ns="${2:-granary}"
granary=(node ../../bin/granary.js)
mkdir -p certs
[[ -f certs/ca.pem ]] || "${granary[@]}" certs init --dir certs >/dev/null
for ((i = 0; i < replicas; i++)); do
  name="granary-$i"
  "${granary[@]}" certs issue --dir certs --name "$name" \
    --san "granary-headless.$ns.svc.cluster.local" \
    --san "$name.granary-headless.$ns.svc.cluster.local" >/dev/null
done
echo "wrote $(ls certs | wc -l) files to $(pwd)/certs; now: kubectl apply -k $(pwd)"
