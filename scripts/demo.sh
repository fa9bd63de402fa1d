#!/usr/bin/env bash
# The main job on the embedded local default: a real control plane on this machine,
# the operator in-cluster, and the iris example from Dataset to a served model that is
# promoted through a canary, watched, and rolled back when its traffic drifts.
set -euo pipefail
cd "$(dirname "$0")/.."
ns="${MLKUBE_DEMO_NAMESPACE:-mlkube-demo}"

.venv/bin/mlkube dev up
kubeconfig="$(.venv/bin/mlkube dev kubeconfig)"
k() { kubectl --kubeconfig "$kubeconfig" -n "$ns" "$@"; }

# The whole closed loop, told as a timeline: examples/iris profiled, trained and served;
# a second model generation promoted through a canary on its own traffic; then drifted
# traffic until the operator rolls back (see `mlkube demo --help`, `--json` for a summary).
.venv/bin/mlkube demo --namespace "$ns"
echo
k get mlkube -o wide

# Through the front door: the predictor's Service, as any client in or out of the cluster.
svc_ip="$(k get service iris -o jsonpath='{.spec.clusterIP}')"
port="$(k get service iris -o jsonpath='{.spec.ports[0].port}')"
echo "== KServe V1 predict through Service iris (ClusterIP ${svc_ip}:${port})"
curl -sS --max-time 10 -X POST "http://${svc_ip}:${port}/v1/models/iris:predict" -H 'Content-Type: application/json' \
  -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'
echo
echo "== Open Inference Protocol V2 model metadata, from a pod, by the Service's DNS name"
k delete pod demo-client --ignore-not-found --wait=true >/dev/null
k run demo-client --restart=Never --image=localhost/mlkube-server:dev --command -- \
  python -c "import urllib.request; print(urllib.request.urlopen('http://iris.${ns}.svc.cluster.local:${port}/v2/models/iris', timeout=10).read().decode())" >/dev/null
k wait --for=jsonpath='{.status.phase}'=Succeeded pod/demo-client --timeout=120s >/dev/null
k logs demo-client
k delete pod demo-client --wait=false >/dev/null
echo
echo "The cluster keeps running. Query the model yourself:"
echo "  export KUBECONFIG=${kubeconfig}"
echo "  curl -X POST http://${svc_ip}:${port}/v1/models/iris:predict -H 'Content-Type: application/json' -d '{\"instances\": [[5.1, 3.5, 1.4, 0.2]]}'"
echo "  kubectl -n ${ns} port-forward service/iris 8080:${port} &   # then: curl http://127.0.0.1:8080/v2/models/iris"
echo "  kubectl -n ${ns} get mlkube"
echo "  kubectl -n ${ns} describe trainingrun iris-rf"
echo "Stop everything with: .venv/bin/mlkube dev down"
