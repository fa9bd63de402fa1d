"""The Kubernetes API client every operator adapter uses: the stock client, counted.

Subclassing `ApiClient.call_api` (the one method every generated API call goes
through) counts each request by verb, resource and status in
`mlkube_operator.observability`, whatever adapter made it and however it was made
(create, server-side apply, the leader Lease), without wrapping each call site.
"""

from __future__ import annotations

import os
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from ..observability import observe_api_request, request_labels


class InstrumentedApiClient(kubernetes.client.ApiClient):
    def call_api(
        self,
        method: str,
        url: str,
        header_params: dict[str, str] | None = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> Any:
        content_type = next(
            (v for k, v in (header_params or {}).items() if k.lower() == "content-type"), None
        )
        verb, resource = request_labels(method, url, content_type)
        try:
            response = super().call_api(method, url, header_params, body, post_params, _request_timeout)
        except ApiException as err:
            observe_api_request(verb, resource, int(err.status or 0) or None)
            raise
        except Exception:
            observe_api_request(verb, resource, None)
            raise
        observe_api_request(verb, resource, int(response.status), body)
        return response


def connect() -> kubernetes.client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
    configuration = kubernetes.client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return InstrumentedApiClient(configuration)
