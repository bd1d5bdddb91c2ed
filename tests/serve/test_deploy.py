"""`loopline export docker` / `k8s`: deployment files for `loopline serve`, checked against
Kubernetes' OpenAPI schemas (kubernetes-validate), parsed as a Dockerfile (dockerfile-parse)
and linted by hadolint. No container runtime or cluster runs here: nothing is built or
applied; the health check's command is run against a real server instead.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from loopline.errors import LooplineError
from loopline.registry.models import LoadedModel, ModelVersionInfo
from loopline.serve import start_in_thread
from loopline.serve.deploy import dockerfile, k8s_manifests, k8s_yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")
dockerfile_parse = pytest.importorskip("dockerfile_parse")
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
K8S_VERSION = "1.30.0"


def loopline(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopline", "-C", str(project), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def parsed_dockerfile(text: str) -> dict[str, list[str]]:
    """Instruction -> its values, in order, as Docker's parser splits them."""
    # In memory: given no file object, the parser writes ./Dockerfile when content is set.
    parser = dockerfile_parse.DockerfileParser(fileobj=io.BytesIO())
    parser.content = text
    found: dict[str, list[str]] = {}
    for instruction in parser.structure:
        found.setdefault(instruction["instruction"], []).append(instruction["value"])
    return found


def test_the_dockerfile_serves_the_model_as_a_non_root_user_and_lints_clean(
    project: Path, tmp_path: Path
) -> None:
    (project / "loopline.yaml").write_text("pipelines:\n  mine: flows/mine.py:mine\n")
    (project / "flows").mkdir()
    (project / "flows" / "mine.py").write_text("")
    out = tmp_path / "Dockerfile"
    done = loopline(project, "export", "docker", "fraud@champion", "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    found = parsed_dockerfile(text)
    assert found["FROM"] == ["python:3.11-slim"]
    assert 'pip install --no-cache-dir "loopline[postgres]==0.1.0"' in found["RUN"][0]
    assert found["COPY"] == ["--chown=10001:10001 loopline.yaml flows/mine.py ./"]
    assert found["USER"] == ["10001"] and "useradd" in found["RUN"][0]
    assert found["EXPOSE"] == ["8000"]
    assert "/health" in found["HEALTHCHECK"][0]
    assert json.loads(found["ENTRYPOINT"][0]) == ["loopline"]
    assert json.loads(found["CMD"][0]) == [
        "serve",
        "fraud@champion",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    lint = subprocess.run(
        [HADOLINT, "--format", "json", str(out)], capture_output=True, text=True, check=False
    )
    assert json.loads(lint.stdout or "[]") == [], lint.stdout
    assert lint.returncode == 0


def _healthcheck(text: str) -> list[str]:
    found = parsed_dockerfile(text)["HEALTHCHECK"][0]
    return json.loads(found[found.index("CMD") + 3 :].strip())


def test_the_health_check_passes_on_a_live_server_and_fails_without_one() -> None:
    texts = pd.DataFrame({"text": ["good day", "great fun", "bad day", "awful mess"]})
    model = Pipeline(
        [
            ("features", ColumnTransformer([("tfidf", TfidfVectorizer(), "text")])),
            ("classifier", LogisticRegression()),
        ]
    ).fit(texts, ["positive", "positive", "negative", "negative"])
    info = ModelVersionInfo("toy", "1", "run-1", ["champion"], {}, None, None, {})
    classes = [str(c) for c in model.classes_]
    with start_in_thread(LoadedModel(info, model, ["text"], classes)) as server:
        command = _healthcheck(dockerfile("toy", package="loopline", files=[], port=server.port))
        assert command[0] == "python"
        live = subprocess.run([sys.executable, *command[1:]], capture_output=True, timeout=30)
        assert live.returncode == 0, live.stderr
    dead = subprocess.run([sys.executable, *command[1:]], capture_output=True, timeout=30)
    assert dead.returncode != 0


def test_the_manifests_validate_against_the_kubernetes_schemas(
    project: Path, tmp_path: Path
) -> None:
    out = tmp_path / "serve.yaml"
    done = loopline(
        project, "export", "k8s", "fraud@champion", "--image", "reg.example/fraud:1", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "&id" not in text  # no YAML anchors: every tool reads it
    objects = list(yaml.safe_load_all(text))
    assert [o["kind"] for o in objects] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    deployment, service, autoscaler = objects
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve", "fraud@champion", "--host", "0.0.0.0", "--port", "8000"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in container["env"]}
    # The variable `loopline serve` reads its admin token from, out of the Secret.
    assert env["LOOPLINE_ADMIN_TOKEN"] == {
        "name": "fraud-serve-secrets",
        "key": "admin-token",
        "optional": True,
    }
    assert env["LOOPLINE_MLFLOW_TRACKING_URI"]["optional"] is False
    assert "kubectl create secret generic fraud-serve-secrets" in text
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert autoscaler["spec"]["minReplicas"] == 2 and autoscaler["spec"]["maxReplicas"] == 10


def test_a_broken_manifest_fails_the_same_validation() -> None:
    """The validator catches what a typo in the generator would produce."""
    deployment = k8s_manifests("fraud", image="reg.example/fraud:1", name="fraud-serve")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"][
        "pathh"
    ] = "/ready"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: k8s_manifests("m", image="i", name="Bad_Name"), "not a valid Kubernetes name"),
        (lambda: k8s_manifests("m", image="i", name="m", replicas=5, max_replicas=2), "between"),
        (lambda: k8s_manifests("m", image="i", name="m", cpu_target=0), "percentage"),
        (lambda: dockerfile("m", package="p", files=[], port=0), "out of range"),
        (lambda: dockerfile("m", package="p", files=[], python="latest"), "not a Python version"),
        (lambda: dockerfile("m@", package="p", files=[]), "cannot read the model reference"),
    ],
)
def test_bad_settings_are_clear_errors(call: Any, message: str) -> None:
    with pytest.raises(LooplineError, match=message):
        call()


def test_the_yaml_header_says_how_to_create_the_secret() -> None:
    text = k8s_yaml(k8s_manifests("m", image="i", name="m-serve"), secret="m-serve-secrets")
    assert text.startswith("# Written by `loopline export k8s`")
    assert "--from-literal=admin-token=..." in text
