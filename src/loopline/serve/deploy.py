"""Deployment files for ``loopline serve``: a Dockerfile and Kubernetes manifests.

What they encode is the server's own contract, kept here beside it: the command line,
``GET /health`` (the process answers: liveness) and ``GET /ready`` (a model is loaded:
readiness), and the variables it reads its secrets from (:data:`DEFAULT_ADMIN_TOKEN_ENV`,
:data:`DEFAULT_API_KEYS_ENV`). In a cluster every replica must see the same registry and
stores, so the manifests take the project's store settings (``LOOPLINE_METADATA_URL``,
``LOOPLINE_MLFLOW_TRACKING_URI``, ...) from a Secret, like the admin token: URLs of
databases carry passwords.
"""

from __future__ import annotations

import re
from typing import Any

from loopline.errors import LooplineError
from loopline.serve.routing import parse_model_ref
from loopline.serve.server import DEFAULT_ADMIN_TOKEN_ENV, DEFAULT_API_KEYS_ENV

__all__ = ["dockerfile", "k8s_manifests", "k8s_yaml"]

HEALTH_PATH = "/health"
READY_PATH = "/ready"
_UID = 10001  # a fixed non-root user: Kubernetes' runAsNonRoot checks a numeric id
# Each Secret key (the file a user creates with kubectl) and the variable it fills.
SECRET_KEYS = {
    "admin-token": (DEFAULT_ADMIN_TOKEN_ENV, True),
    "api-keys": (DEFAULT_API_KEYS_ENV, True),
    "metadata-url": ("LOOPLINE_METADATA_URL", False),
    "mlflow-tracking-uri": ("LOOPLINE_MLFLOW_TRACKING_URI", False),
    "artifact-root": ("LOOPLINE_ARTIFACT_ROOT", True),
    "prediction-log-url": ("LOOPLINE_PREDICTION_LOG_URL", True),
}  # key -> (variable, optional)


def _serve_args(model: str, port: int) -> list[str]:
    return ["serve", parse_model_ref(model), "--host", "0.0.0.0", "--port", str(port)]


def dockerfile(
    model: str,
    *,
    package: str,
    files: list[str],
    python: str = "3.11",
    port: int = 8000,
) -> str:
    """A Dockerfile that serves ``model`` (``NAME[@ALIAS]``) with ``loopline serve``.

    ``package`` is the pip requirement that installs Loopline with its extras (e.g.
    ``loopline[postgres]==0.1.0``); ``files`` are the project files copied beside it (its
    settings and pipeline code, which a pickled model may reference); the build context
    is the project folder.
    """
    _check_port(port)
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", python):
        raise LooplineError(f"{python!r} is not a Python version", hint="e.g. --python 3.11")
    args = ", ".join(f'"{a}"' for a in _serve_args(model, port))
    copy = f"COPY --chown={_UID}:{_UID} {' '.join(files)} ./\n" if files else ""
    probe = (
        "import sys, urllib.request; "
        f"sys.exit(urllib.request.urlopen('http://127.0.0.1:{port}{HEALTH_PATH}', "
        "timeout=4).status != 200)"
    )
    return f"""\
# Serves {model} with `loopline serve` (written by `loopline export docker`).
# Build from the project folder:  docker build -f Dockerfile -t IMAGE .
# The registry and stores come from the environment: LOOPLINE_MLFLOW_TRACKING_URI,
# LOOPLINE_METADATA_URL, ... ; the admin token from ${DEFAULT_ADMIN_TOKEN_ENV}.
FROM python:{python}-slim

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    MLFLOW_DISABLE_TELEMETRY=true

RUN pip install --no-cache-dir "{package}" \\
    && useradd --create-home --uid {_UID} --user-group loopline

WORKDIR /app
{copy}USER {_UID}

EXPOSE {port}
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \\
    CMD ["python", "-c", "{probe}"]

ENTRYPOINT ["loopline"]
CMD [{args}]
"""


def k8s_manifests(
    model: str,
    *,
    image: str,
    name: str,
    port: int = 8000,
    replicas: int = 2,
    max_replicas: int = 10,
    cpu_target: int = 70,
    cpu: str = "500m",
    memory: str = "1Gi",
    cpu_limit: str = "2",
    memory_limit: str = "2Gi",
) -> list[dict[str, Any]]:
    """Deployment, Service and HorizontalPodAutoscaler serving ``model`` from ``image``.

    Readiness on ``/ready`` (no traffic before the model is loaded), liveness on
    ``/health``; the admin token, API keys and store settings from the Secret
    ``<name>-secrets`` (see :data:`SECRET_KEYS`). Returns the objects, in apply order.
    """
    _check_port(port)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", name):
        raise LooplineError(
            f"{name!r} is not a valid Kubernetes name",
            hint="use lower-case letters, digits and '-' (at most 52 characters)",
        )
    if not 1 <= replicas <= max_replicas:
        raise LooplineError(
            f"replicas ({replicas}) must be between 1 and max replicas ({max_replicas})"
        )
    if not 1 <= cpu_target <= 100:
        raise LooplineError(f"the CPU target is a percentage, found {cpu_target}")

    def labels() -> dict[str, str]:  # a fresh dict each time: no YAML anchors in the output
        return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "loopline"}

    secret = f"{name}-secrets"
    env = [
        {
            "name": variable,
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}},
        }
        for key, (variable, optional) in SECRET_KEYS.items()
    ]

    def probe(path: str, delay: int, period: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "initialDelaySeconds": delay,
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        }

    container = {
        "name": "serve",
        "image": image,
        "args": _serve_args(model, port),
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [{"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"}, *env],
        "readinessProbe": probe(READY_PATH, 5, 5),
        "livenessProbe": probe(HEALTH_PATH, 30, 10),
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": cpu_limit, "memory": memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": _UID,
            "allowPrivilegeEscalation": False,
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels()},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels()},
            "template": {"metadata": {"labels": labels()}, "spec": {"containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels()},
        "spec": {
            "selector": labels(),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": labels()},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu_target},
                    },
                }
            ],
        },
    }
    return [deployment, service, autoscaler]


def k8s_yaml(objects: list[dict[str, Any]], *, secret: str) -> str:
    """The manifests as one multi-document YAML file, headed by how to create the Secret."""
    import yaml

    keys = " ".join(f"--from-literal={key}=..." for key in SECRET_KEYS)
    header = (
        "# Written by `loopline export k8s`. Create the Secret first (optional keys may be\n"
        f"# left out):  kubectl create secret generic {secret} {keys}\n"
    )
    return header + yaml.safe_dump_all(objects, sort_keys=False)


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise LooplineError(f"port {port} is out of range", hint="use 1-65535")
