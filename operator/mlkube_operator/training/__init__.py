"""The code that runs inside mlkube's Job pods: profile a Dataset, train a model.

The operator process never reads data or fits models (a bad CSV or a slow fit must
not stall reconciliation of everything else), so this work happens in Jobs that call
`python -m mlkube_operator.training profile|train`. The Jobs talk back only through
the pod's termination message and the artifact store; `contract` holds the shared
names (exit codes, reasons, file layout) and imports nothing heavy, so the operator
can use it without pulling in pandas or scikit-learn.
"""
