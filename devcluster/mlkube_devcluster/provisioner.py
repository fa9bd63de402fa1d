"""A dynamic provisioner for PersistentVolumeClaims: host directories under the state dir.

It runs as a host process of the dev cluster (`python -m mlkube_devcluster.provisioner`),
next to the kubelet, like the local-path provisioners of kind and k3s.

mlkube's artifact store is a PVC, so claims must bind as on a real cluster or nothing
that uses them would ever schedule. The default StorageClass names this provisioner;
for every pending claim of that class a hostPath PV is created already bound to it
through `claimRef`, and the real PV controller in kube-controller-manager completes the
binding. Released volumes of reclaim policy Delete are removed, directory included.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import threading
from pathlib import Path

from .kube import ApiError, Informer, Kube, Obj
from .pki import Pki
from .state import StateDir

log = logging.getLogger("mlkube.provisioner")

STORAGE_CLASS = "standard"
PROVISIONER = "mlkube.io/dev-hostpath"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


class Provisioner:
    def __init__(self, kube: Kube, volumes_dir: Path, stop: threading.Event) -> None:
        self.kube = kube
        self.volumes_dir = volumes_dir
        self.stop = stop
        self._lock = threading.Lock()

    def ensure_storage_class(self) -> None:
        sc = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                "labels": {"app.kubernetes.io/managed-by": "mlkube-dev"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
        try:
            self.kube.create("/apis/storage.k8s.io/v1/storageclasses", sc)
            log.info("Created default StorageClass %s (provisioner %s)", STORAGE_CLASS, PROVISIONER)
        except ApiError as exc:
            if exc.status != 409:
                raise

    def start(self) -> None:
        Informer(
            self.kube,
            "/api/v1/persistentvolumeclaims",
            on_event=lambda _t, o: self._claim(o),
            on_list=self._claims,
            name="pvc-informer",
            stop=self.stop,
        ).start()
        Informer(
            self.kube,
            "/api/v1/persistentvolumes",
            on_event=self._volume_event,
            on_list=self._volumes,
            name="pv-informer",
            stop=self.stop,
        ).start()

    def _claims(self, items: list[Obj]) -> None:
        for pvc in items:
            self._claim(pvc)

    def _volumes(self, items: list[Obj]) -> None:
        for pv in items:
            self._volume(pv)

    def _volume_event(self, etype: str, pv: Obj) -> None:
        if etype != "DELETED":
            self._volume(pv)

    def _class_of(self, pvc: Obj) -> str | None:
        spec = pvc.get("spec", {})
        cls = spec.get("storageClassName")
        if cls is None:
            cls = (pvc.get("metadata", {}).get("annotations") or {}).get(
                "volume.beta.kubernetes.io/storage-class"
            )
        return None if cls is None else str(cls)

    def _claim(self, pvc: Obj) -> None:
        try:
            self._provision(pvc)
        except Exception as exc:
            meta = pvc.get("metadata", {})
            log.warning("provisioning %s/%s failed: %s", meta.get("namespace"), meta.get("name"), exc)

    def _provision(self, pvc: Obj) -> None:
        meta = pvc.get("metadata", {})
        spec = pvc.get("spec", {})
        if meta.get("deletionTimestamp") or spec.get("volumeName"):
            return
        if pvc.get("status", {}).get("phase") not in (None, "Pending"):
            return
        if self._class_of(pvc) != STORAGE_CLASS:
            return
        uid = str(meta["uid"])
        name = f"pvc-{uid}"
        path = self.volumes_dir / name
        request = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": name,
                "annotations": {PROVISIONED_BY: PROVISIONER},
                "labels": {"app.kubernetes.io/managed-by": "mlkube-dev"},
            },
            "spec": {
                "capacity": {"storage": request},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": uid,
                },
            },
        }
        with self._lock:
            path.mkdir(parents=True, exist_ok=True)
            # Workloads run as arbitrary non-root users (mlkube's as 10001), as on a real
            # cluster's volumes: the directory must be writable for them.
            os.chmod(path, 0o1777)
            try:
                self.kube.create("/api/v1/persistentvolumes", pv)
            except ApiError as exc:
                if exc.status == 409:
                    return
                raise
        log.info("Provisioned %s for claim %s/%s at %s", name, meta["namespace"], meta["name"], path)

    def _volume(self, pv: Obj) -> None:
        meta = pv.get("metadata", {})
        spec = pv.get("spec", {})
        if (meta.get("annotations") or {}).get(PROVISIONED_BY) != PROVISIONER:
            return
        if pv.get("status", {}).get("phase") not in ("Released", "Failed"):
            return
        if spec.get("persistentVolumeReclaimPolicy") != "Delete":
            return
        raw = (spec.get("hostPath") or {}).get("path")
        if raw:
            path = Path(raw)
            # Only ever remove what this provisioner created.
            if path.parent == self.volumes_dir and path.name == meta.get("name"):
                shutil.rmtree(path, ignore_errors=True)
        try:
            self.kube.delete(f"/api/v1/persistentvolumes/{meta['name']}")
            log.info("Deleted released volume %s", meta["name"])
        except ApiError as exc:
            log.warning("deleting %s failed: %s", meta.get("name"), exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlkube_devcluster.provisioner")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    state = StateDir(args.state_dir)
    cfg = state.load_config()
    kube = Kube.admin(cfg.apiserver_url, Pki(state.pki))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    prov = Provisioner(kube, state.volumes, stop)
    prov.ensure_storage_class()
    prov.start()
    (state.run / "provisioner.ready").write_text(f"{os.getpid()}\n")
    stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
