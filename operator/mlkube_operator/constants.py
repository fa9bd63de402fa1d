"""Names shared by every part of the operator.

They live in one module so that a label, a condition reason or an annotation is
spelt the same by the planner that writes it, the handler that reads it and the
test that checks it.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "mlkube.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "mlkube"

# The one image that carries the operator, the training/profiling entrypoints and the
# model server. The dev cluster's local kubelet runs only pods of this image.
IMAGE_REPOSITORY: Final = "ghcr.io/mlkube/mlkube"
IMAGE: Final = f"{IMAGE_REPOSITORY}:0.1.0"

PART_OF: Final = "mlkube"
MANAGED_BY: Final = "mlkube-operator"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
