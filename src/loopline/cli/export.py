"""``loopline export``: a pipeline for Airflow or Kubeflow Pipelines, the server for Docker or
Kubernetes (:mod:`loopline.orchestrate.export`, :mod:`loopline.serve.deploy`)."""

from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.support import lazy_console, settings_from

__all__ = ["export_app"]

export_app = typer.Typer(
    help="Write files that run Loopline elsewhere: an Airflow DAG, a Kubeflow Pipelines "
    "package, a Dockerfile or Kubernetes manifests for `loopline serve`."
)
out = lazy_console(highlight=False)
err = lazy_console(stderr=True, highlight=False, soft_wrap=True)

PipelineArg = Annotated[
    str | None,
    typer.Argument(metavar="PIPELINE", help="Pipeline name from loopline.yaml."),
]
ModelArg = Annotated[str, typer.Argument(metavar="MODEL[@ALIAS]", help="e.g. sentiment@champion.")]
LooplineOpt = Annotated[
    str,
    typer.Option("--loopline", metavar="COMMAND", help="The loopline command on the workers."),
]


def _say_written(path: Path) -> None:
    out().print(f"[green]wrote[/] {path}")


def _warn_local_stores(ctx: typer.Context) -> None:
    """Tasks on other machines see only shared stores: say so when the project's are not."""
    settings = settings_from(ctx)
    local = [
        name
        for name, value in (
            ("metadata_url", settings.metadata_url),
            ("artifact_root", settings.artifact_root),
        )
        if value is None or value.startswith("sqlite") or "://" not in value
    ]
    if local:
        err().print(
            f"note: {' and '.join(local)} are local to this machine; tasks on other machines "
            "need shared stores (postgresql://, s3://) in loopline.yaml or LOOPLINE_* variables"
        )


@export_app.command("airflow")
def airflow_command(
    ctx: typer.Context,
    pipeline_name: PipelineArg = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE.py", help="DAG file to write.")
    ] = Path("loopline_dag.py"),
    dag_id: Annotated[
        str | None, typer.Option(metavar="ID", help="Airflow DAG id (default: loopline_PIPELINE).")
    ] = None,
    project_dir: Annotated[
        str | None,
        typer.Option(metavar="DIR", help="The project folder on the workers (default: this one)."),
    ] = None,
    loopline: LooplineOpt = "loopline",
) -> None:
    """An Airflow DAG file: one task per step of the pipeline.

    Each task is a BashOperator running `loopline run PIPELINE --step NAME`; the edges are
    the pipeline's, its parameters the DAG's params. Every task of one DAG run passes the
    same run id, so Loopline records one run with the usual caching and lineage. Put the
    file in Airflow's dags folder (Airflow 3).
    """
    from loopline.orchestrate.export import export_plan, write_airflow

    plan = export_plan(
        settings_from(ctx), pipeline_name, project_dir=project_dir, loopline=loopline
    )
    _say_written(write_airflow(plan, output, dag_id=dag_id))


@export_app.command("kfp")
def kfp_command(
    ctx: typer.Context,
    image: Annotated[
        str,
        typer.Option(
            metavar="IMAGE",
            help="Container image holding Loopline and the project (e.g. from "
            "`loopline export docker`).",
        ),
    ],
    pipeline_name: PipelineArg = None,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="FILE.yaml", help="Pipeline package to write."),
    ] = Path("loopline_pipeline.yaml"),
    project_dir: Annotated[
        str, typer.Option(metavar="DIR", help="The project folder inside the image.")
    ] = "/app",
    loopline: LooplineOpt = "loopline",
) -> None:
    """A Kubeflow Pipelines v2 package: one container task per step of the pipeline.

    Compiled with the kfp SDK (the kfp extra of Loopline). Each task runs
    `loopline run PIPELINE --step NAME` in IMAGE with the KFP job's id as run id; the edges
    are the pipeline's (.after()), its parameters the run's parameters.
    """
    from loopline.orchestrate.export import export_plan, write_kfp

    plan = export_plan(
        settings_from(ctx), pipeline_name, project_dir=project_dir, loopline=loopline
    )
    _warn_local_stores(ctx)
    _say_written(write_kfp(plan, output, image=image))


@export_app.command("docker")
def docker_command(
    ctx: typer.Context,
    model: ModelArg,
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE", help="Dockerfile to write.")
    ] = Path("Dockerfile"),
    package: Annotated[
        str | None,
        typer.Option(
            metavar="REQUIREMENT",
            help="What pip installs (default: loopline[postgres] at this version).",
        ),
    ] = None,
    python: Annotated[str, typer.Option(metavar="X.Y", help="Python of the base image.")] = (
        "3.11"
    ),
    port: Annotated[int, typer.Option(help="Port the server listens on.")] = 8000,
) -> None:
    """A Dockerfile that runs `loopline serve MODEL`.

    A slim Python image with Loopline installed by pip, the project's settings and
    pipeline files, a non-root user, EXPOSE and a HEALTHCHECK on /health. Build it from
    the project folder.
    """
    from loopline import __version__
    from loopline.core.files import write_atomic
    from loopline.serve.deploy import dockerfile

    settings = settings_from(ctx)
    root = settings.project_root
    files = ["loopline.yaml"] if (root / "loopline.yaml").is_file() else []
    for ref in settings.pipelines.values():
        path = ref.rpartition(":")[0]
        if path.endswith(".py") and (root / path).is_file() and path not in files:
            files.append(path)
    text = dockerfile(
        model,
        package=package or f"loopline[postgres]=={__version__}",
        files=files,
        python=python,
        port=port,
    )
    write_atomic(output, text)
    _say_written(output)


@export_app.command("k8s")
def k8s_command(
    ctx: typer.Context,
    model: ModelArg,
    image: Annotated[
        str, typer.Option(metavar="IMAGE", help="The server's image (`loopline export docker`).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE.yaml", help="Manifests to write.")
    ] = Path("loopline-serve.yaml"),
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Name of the objects (default: MODEL-serve).")
    ] = None,
    replicas: Annotated[int, typer.Option(min=1, help="Replicas at least.")] = 2,
    max_replicas: Annotated[int, typer.Option(min=1, help="Replicas at most (autoscaling).")] = 10,
    cpu_target: Annotated[
        int, typer.Option(metavar="PERCENT", help="Average CPU use the autoscaler aims at.")
    ] = 70,
    cpu: Annotated[str, typer.Option(help="CPU requested per replica.")] = "500m",
    memory: Annotated[str, typer.Option(help="Memory requested per replica.")] = "1Gi",
    port: Annotated[int, typer.Option(help="Port the server listens on.")] = 8000,
) -> None:
    """Kubernetes manifests that run `loopline serve MODEL`.

    A Deployment (readiness on /ready, liveness on /health, resources, non-root), a
    Service and a HorizontalPodAutoscaler. The admin token, API keys and store URLs come
    from the Secret NAME-secrets (the file says how to create it).
    """
    from loopline.core.files import write_atomic
    from loopline.serve.deploy import k8s_manifests, k8s_yaml

    chosen = name or _k8s_name(model.split("@")[0].split("/")[0] + "-serve")
    objects = k8s_manifests(
        model,
        image=image,
        name=chosen,
        port=port,
        replicas=replicas,
        max_replicas=max_replicas,
        cpu_target=cpu_target,
        cpu=cpu,
        memory=memory,
    )
    write_atomic(output, k8s_yaml(objects, secret=f"{chosen}-secrets"))
    _say_written(output)


def _k8s_name(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:52].strip("-")
