#!/usr/bin/env bash
# Smoke test of a real kind cluster from the node image in images.env (offline or
# online, IMAGE_SOURCE there):
# 1 control plane + 2 workers, all nodes Ready, CoreDNS answers, a pod in one
# namespace reaches a pod in another (positive control), and after a deny
# NetworkPolicy it no longer can (polled, then held for 10 s).
#   Prerequisite: ci/offline/ensure.sh node
#   CERTCTL_KEEP_CLUSTER=always|failure|never (default never): keep the cluster.
#   CERTCTL_SMOKE_CLUSTER: cluster name (default certctl-smoke).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CLUSTER=${CERTCTL_SMOKE_CLUSTER:-certctl-smoke}
KEEP=${CERTCTL_KEEP_CLUSTER:-never}
HOLD_SECONDS=10

[[ -f $IMAGES_ENV ]] || die "$IMAGES_ENV missing; run: bash ci/offline/ensure.sh node"
# shellcheck source=/dev/null
source "$IMAGES_ENV"
[[ -n ${NODE_IMAGE:-} ]] || die "NODE_IMAGE not set in $IMAGES_ENV; run: bash ci/offline/ensure.sh node"
[[ -n ${NETPROBE_IMAGE:-} ]] || die "NETPROBE_IMAGE not set in $IMAGES_ENV; run: bash ci/offline/ensure.sh node"

KIND="$CERTCTL_CACHE/tools/kind/$KIND_VERSION/kind"
KUBECTL="$CERTCTL_CACHE/tools/kubectl/$KUBERNETES_VERSION/kubectl"
[[ -x $KUBECTL ]] || KUBECTL="$CERTCTL_CACHE/go/kubernetes/$KUBERNETES_VERSION/kubectl"
[[ -x $KIND ]] || die "kind $KIND_VERSION not found at $KIND; run: bash ci/offline/ensure.sh node"
[[ -x $KUBECTL ]] || die "kubectl $KUBERNETES_VERSION not found; run: bash ci/offline/ensure.sh node"

WORK=$(mktemp -d)
export KUBECONFIG="$WORK/kubeconfig"
k() { "$KUBECTL" "$@"; }

reproduce() {
  cat >&2 <<MSG
--- reproduce / inspect:
  $KIND create cluster --name $CLUSTER --image $NODE_IMAGE --config $WORK/kind.yaml --kubeconfig $KUBECONFIG
  KUBECONFIG=$KUBECONFIG $KUBECTL get pods -A -o wide
  $KIND export logs --name $CLUSTER $WORK/logs
  $KIND delete cluster --name $CLUSTER
MSG
}
result=failure
cleanup() {
  local rc=$?
  if [[ $result != success ]]; then
    echo "SMOKE FAILED (exit $rc)" >&2
    "$KUBECTL" get nodes -o wide >&2 2>/dev/null || true
    "$KUBECTL" get pods -A -o wide >&2 2>/dev/null || true
    # Node logs (kubelet, containerd, pods) go where the run's other artifacts are.
    local logs=${CERTCTL_ARTIFACTS:-$REPO_DIR/target/e2e-artifacts}/kind-logs-smoke
    rm -rf "$logs"
    if "$KIND" export logs --name "$CLUSTER" "$logs" >/dev/null 2>&1; then
      echo "kind logs of $CLUSTER: $logs" >&2
    fi
    reproduce
  fi
  if [[ $KEEP == always || ($KEEP == failure && $result != success) ]]; then
    log "keeping cluster $CLUSTER (CERTCTL_KEEP_CLUSTER=$KEEP); kubeconfig $KUBECONFIG"
  else
    "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# poll DESCRIPTION TIMEOUT CMD...: run CMD every second until it succeeds.
poll() {
  local what=$1 timeout=$2 deadline out; shift 2
  deadline=$(( $(date +%s) + timeout ))
  while true; do
    if out=$("$@" 2>&1); then log "ok: $what"; return 0; fi
    (( $(date +%s) < deadline )) || die "timed out after ${timeout}s waiting for: $what; last output: $out"
    sleep 1
  done
}

cat >"$WORK/kind.yaml" <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
YAML

# --- cluster, created with one retry (kind creation can flake on busy hosts)
"$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
t0=$(date +%s)
for attempt in 1 2; do
  if "$KIND" create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --config "$WORK/kind.yaml" \
       --kubeconfig "$KUBECONFIG" --retain --wait 0s; then break; fi
  (( attempt < 2 )) || die "kind create cluster failed twice"
  log "kind create failed (attempt $attempt); exporting logs to $WORK/logs-$attempt and retrying"
  "$KIND" export logs --name "$CLUSTER" "$WORK/logs-$attempt" >/dev/null 2>&1 || true
  "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
done
t_create=$(( $(date +%s) - t0 ))
log "cluster created in ${t_create}s"
# The offline node image preloads the probe; kind's upstream one does not.
if [[ ${IMAGE_SOURCE:-offline} == online ]]; then
  "$KIND" load docker-image --name "$CLUSTER" "$NETPROBE_IMAGE"
fi

k wait --for=condition=Ready nodes --all --timeout=300s
n=$(k get nodes --no-headers | wc -l)
[[ $n -eq 3 ]] || die "expected 3 nodes, found $n"
t_ready=$(( $(date +%s) - t0 ))
log "3 nodes Ready ${t_ready}s after create started"

# --- workloads: namespaces a (client) and b (server)
probe_pod() {  # NAME NAMESPACE ARGS...
  local name=$1 ns=$2; shift 2
  k -n "$ns" run "$name" --image "$NETPROBE_IMAGE" --image-pull-policy Never --restart Never \
    --labels "app=$name" --command -- /usr/local/bin/netprobe "$@" >/dev/null
}
k create namespace smoke-a >/dev/null
k create namespace smoke-b >/dev/null
probe_pod server smoke-b serve :8080
probe_pod client smoke-a idle
k -n smoke-b wait --for=condition=Ready pod/server --timeout=180s
k -n smoke-a wait --for=condition=Ready pod/client --timeout=180s
server_ip=$(k -n smoke-b get pod server -o jsonpath='{.status.podIP}')
log "server pod on $(k -n smoke-b get pod server -o jsonpath='{.spec.nodeName}') at $server_ip; client on $(k -n smoke-a get pod client -o jsonpath='{.spec.nodeName}')"

k -n kube-system wait --for=condition=Available deployment/coredns --timeout=180s
poll "CoreDNS resolves kubernetes.default.svc.cluster.local" 120 \
  k -n smoke-a exec client -- /usr/local/bin/netprobe dns kubernetes.default.svc.cluster.local
reach() { k -n smoke-a exec client -- /usr/local/bin/netprobe connect "$server_ip:8080" 2s; }
blocked() { ! reach; }
poll "positive control: smoke-a/client reaches smoke-b/server" 120 reach

k apply -f - >/dev/null <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all-ingress
  namespace: smoke-b
spec:
  podSelector: {}
  policyTypes: [Ingress]
YAML
poll "deny NetworkPolicy blocks smoke-a/client -> smoke-b/server" 120 blocked
for i in $(seq "$HOLD_SECONDS"); do
  if reach >/dev/null 2>&1; then die "connection succeeded again ${i}s after the policy took effect: NetworkPolicy not enforced"; fi
  sleep 1
done
log "ok: still blocked after ${HOLD_SECONDS}s"

# --- idle memory of the node containers
mem=$(docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' $(docker ps -q --filter "label=io.x-k8s.kind.cluster=$CLUSTER"))
log "node memory (docker stats):"$'\n'"$mem"
printf 'smoke create=%ss ready=%ss total=%ss\n' "$t_create" "$t_ready" "$(( $(date +%s) - t0 ))" | tee -a "$CERTCTL_CACHE/timings.log" >&2
result=success
echo "SMOKE PASSED: 3 nodes Ready, CoreDNS answers, cross-namespace traffic allowed then denied by NetworkPolicy"
