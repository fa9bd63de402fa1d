"""mlkube's model server: one verified scikit-learn model behind KServe V1 and V2 (Open Inference Protocol).

It lives in its own package, importing nothing from the operator, so that the serving
image's attack surface and start-up time are those of a model server, not of a
Kubernetes client.  ``python -m mlkube_serving --help`` lists its settings.
"""

__version__ = "0.1.0"
