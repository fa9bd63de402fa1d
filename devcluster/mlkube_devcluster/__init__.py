"""The embedded local default: a real Kubernetes control plane plus a local kubelet.

mlkube is only ever exercised against a real API server, because the behaviours that
matter (admission, defaulting, garbage collection, the Job and Deployment controllers,
status subresources, watches) are exactly the ones an emulator gets subtly wrong. This
package starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler on
loopback, registers one Node and runs its Pods as local processes, so `mlkube dev up`
and the test suite see an ordinary cluster without Docker or a VM.

Nothing here is imported by operator or workload code: they cannot know they run locally.
"""
