# mlkube's images: one Dockerfile, three targets, each with only what its process needs.
#
#   operator  kopf + the Kubernetes client + the API models; no scikit-learn
#   trainer   the profile and training Jobs (python -m mlkube_operator.training); no Kubernetes client
#   server    the model server (python -m mlkube_serving); no Kubernetes client
#
# Build (podman, buildah or docker buildx; `make image` does it without Docker or a registry):
#   podman build --target operator -t ghcr.io/mlkube/mlkube-operator:0.1.0 .
#   podman build --target trainer  -t ghcr.io/mlkube/mlkube-trainer:0.1.0 .
#   podman build --target server   -t ghcr.io/mlkube/mlkube-server:0.1.0 .
# BASE_IMAGE may be any image with python3 (>= 3.11) and its venv module: the public slim
# image, or one made from Debian packages where no registry is reachable.
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret (it is used by
# pip only and never stored in a layer):  --secret id=hostca,src=/etc/ssl/certs/ca-certificates.crt
# Every image runs as the numeric user 10001 and works with a read-only root filesystem
# (HOME and temporary files go to /tmp, which the pods mount as an emptyDir).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# /etc/passwd is written directly: minimal Debian bases have no useradd.
RUN python3 -m venv /opt/venv \
 && echo 'mlkube:x:10001:' >> /etc/group \
 && echo 'mlkube:x:10001:10001:mlkube:/tmp:/usr/sbin/nologin' >> /etc/passwd

# The third-party wheels the targets need, downloaded once. Only pyproject.toml is copied,
# so a source change does not download them again; each extra's requirements are listed
# in /reqs/<extra>.txt for the targets.
FROM base AS deps
WORKDIR /src
COPY pyproject.toml ./
RUN mkdir /reqs && python3 -c 'import tomllib; extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]; core = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; [open(f"/reqs/{e}.txt", "w").write("\n".join(core + extras[e]) + "\n") for e in ("operator", "trainer", "server")]'
RUN --mount=type=secret,id=hostca \
    if [ -s /run/secrets/hostca ]; then export PIP_CERT=/run/secrets/hostca; fi; \
    pip wheel --quiet --wheel-dir /wheels -r /reqs/operator.txt -r /reqs/trainer.txt -r /reqs/server.txt

# mlkube's own wheel (no dependencies).
FROM base AS app
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY serving ./serving
RUN --mount=type=secret,id=hostca \
    if [ -s /run/secrets/hostca ]; then export PIP_CERT=/run/secrets/hostca; fi; \
    pip wheel --quiet --no-deps --wheel-dir /dist .

FROM base AS operator
COPY --from=deps /reqs/operator.txt /tmp/requirements.txt
RUN --mount=type=bind,from=deps,source=/wheels,target=/wheels \
    pip install --quiet --no-index --find-links /wheels -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY --from=app /dist /dist
RUN pip install --quiet --no-index --no-deps /dist/*.whl && rm -rf /dist
USER 10001:10001
EXPOSE 8080
CMD ["mlkube", "operator"]

FROM base AS trainer
COPY --from=deps /reqs/trainer.txt /tmp/requirements.txt
RUN --mount=type=bind,from=deps,source=/wheels,target=/wheels \
    pip install --quiet --no-index --find-links /wheels -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY --from=app /dist /dist
RUN pip install --quiet --no-index --no-deps /dist/*.whl && rm -rf /dist
USER 10001:10001
CMD ["python", "-m", "mlkube_operator.training", "--help"]

FROM base AS server
COPY --from=deps /reqs/server.txt /tmp/requirements.txt
RUN --mount=type=bind,from=deps,source=/wheels,target=/wheels \
    pip install --quiet --no-index --find-links /wheels -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY --from=app /dist /dist
RUN pip install --quiet --no-index --no-deps /dist/*.whl && rm -rf /dist
USER 10001:10001
EXPOSE 8080
CMD ["python", "-m", "mlkube_serving"]
