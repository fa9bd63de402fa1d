# One image for the operator, the profile/training Jobs and the model server.
# Build: docker build -t ghcr.io/mlkube/mlkube:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY serving ./serving
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && groupadd --gid 10001 mlkube && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin mlkube
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["mlkube"]
CMD ["--help"]
