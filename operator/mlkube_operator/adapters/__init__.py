"""The only modules that talk to the outside world (Kubernetes API, Prometheus, pods)."""
