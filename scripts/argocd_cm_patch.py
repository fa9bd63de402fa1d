"""Print (or, with --write, rewrite) manifests/argocd/argocd-cm-patch.yaml from the Lua scripts.

The Lua files are the source; the patch is what a user without kustomize merges into
Argo CD's `argocd-cm`. tests/gitops/test_argocd_health.py fails when the two differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

ARGOCD = Path(__file__).resolve().parents[1] / "manifests" / "argocd"
KINDS = {
    "Dataset": "dataset.lua",
    "TrainingRun": "trainingrun.lua",
    "ModelDeployment": "modeldeployment.lua",
    "ModelGrant": "modelgrant.lua",
}
HEADER = """\
# Argo CD health checks for mlkube.io resources (docs/monitoring.md#argo-cd).
# Merge into Argo CD's argocd-cm:
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file manifests/argocd/argocd-cm-patch.yaml
# Generated from manifests/argocd/*.lua by scripts/argocd_cm_patch.py; do not edit.
"""


def render() -> str:
    lines = [HEADER.rstrip("\n"), "data:"]
    for kind, file in KINDS.items():
        lines.append(f"  resource.customizations.health.mlkube.io_{kind}: |")
        for line in (ARGOCD / file).read_text().splitlines():
            lines.append(f"    {line}" if line else "")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        (ARGOCD / "argocd-cm-patch.yaml").write_text(render())
    else:
        sys.stdout.write(render())
