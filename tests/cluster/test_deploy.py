"""deploy/ checked without a container engine (there is none here): the compose files parse, name what
they need, and every command in them is one the installed tools accept (the studio's own CLI, ``mlflow
server``, ``ray start``) with the settings filled in from deploy/.env.example; the image's files exist."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _example_env() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines())
    return {k.strip(): v.strip() for k, v in (p for p in pairs if len(p) == 2) if not k.startswith("#")}


def _fill(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}``, from deploy/.env.example."""

    def one(match: re.Match) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        if op == ":-":
            return rest
        raise AssertionError(f"{name} is not in deploy/.env.example ({rest})")

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value)


def _services(name: str) -> dict[str, dict]:
    compose = yaml.safe_load((DEPLOY / name).read_text())
    env = _example_env()
    services = {}
    for service, spec in compose["services"].items():
        spec = dict(spec)
        spec["command"] = [_fill(str(part), env) for part in spec.get("command", [])]
        spec["environment"] = {k: _fill(str(v), env) for k, v in (spec.get("environment") or {}).items()}
        services[service] = spec
    return services


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_team_compose_file_has_the_studio_mlflow_on_postgresql_and_a_ray_head() -> None:
    services = _services("compose.yaml")
    assert set(services) == {"postgres", "mlflow", "ray-head", "studio"}
    for spec in services.values():
        image = spec["image"]
        assert ":" in image and not image.endswith(":latest"), image  # pinned
        if "build" in spec:
            assert (DEPLOY / spec["build"]["context"] / spec["build"]["dockerfile"]).resolve().is_file()

    studio, mlflow, head, db = (
        services["studio"],
        services["mlflow"],
        services["ray-head"],
        services["postgres"],
    )
    assert studio["environment"]["STUDIO_EXECUTOR"] == "ray"
    # The studio reaches the head's dashboard and the MLflow server where they listen.
    assert urlsplit(studio["environment"]["RAY_ADDRESS"]).port == int(
        _option(head["command"], "--dashboard-port")
    )
    tracking = urlsplit(_option(studio["command"], "--mlflow-uri"))
    assert tracking.port == int(_option(mlflow["command"], "--port"))
    assert f"{tracking.hostname}:{tracking.port}" in _option(mlflow["command"], "--allowed-hosts").split(",")
    backend = urlsplit(_option(mlflow["command"], "--backend-store-uri"))
    assert backend.scheme == "postgresql" and backend.path == f"/{db['environment']['POSTGRES_DB']}"
    assert backend.username == db["environment"]["POSTGRES_USER"]
    assert backend.password == db["environment"]["POSTGRES_PASSWORD"]
    assert "--serve-artifacts" in mlflow["command"]
    assert set(mlflow["depends_on"]) == {"postgres"} and set(studio["depends_on"]) == {"mlflow", "ray-head"}
    assert (DEPLOY / ".gitignore").read_text().splitlines()[-1] == ".env"


def test_the_studio_command_and_executor_are_the_repositorys_own() -> None:
    from studio.cli.main import build_parser
    from studio.jobs.executors import EXECUTORS

    studio = _services("compose.yaml")["studio"]
    command = studio["command"]
    assert command[:3] == ["python", "-m", "studio"] and (REPO / "studio" / "__main__.py").is_file()
    args = build_parser().parse_args(command[3:])
    assert args.command == "serve" and args.mlflow_uri.startswith("http://")
    assert studio["environment"]["STUDIO_EXECUTOR"] in EXECUTORS


def test_the_mlflow_server_command_is_one_mlflow_accepts() -> None:
    from mlflow.cli import server

    command = _services("compose.yaml")["mlflow"]["command"]
    assert command[:2] == ["mlflow", "server"]
    context = server.make_context("server", command[2:])  # raises on an unknown option or a bad value
    assert context.params["serve_artifacts"] and context.params["backend_store_uri"].startswith(
        "postgresql://"
    )


def test_the_shared_mlflow_server_starts_no_job_runner_unless_asked() -> None:
    from mlflow.environment_variables import MLFLOW_SERVER_ENABLE_JOB_EXECUTION

    environment = _services("compose.yaml")["mlflow"]["environment"]
    setting = environment[MLFLOW_SERVER_ENABLE_JOB_EXECUTION.name]
    assert setting == "false"  # (deploy/.env.example leaves it out: off unless deploy/.env says true)


@pytest.mark.ray
def test_the_ray_commands_are_ones_ray_accepts() -> None:
    from ray.scripts.scripts import start

    head = _services("compose.yaml")["ray-head"]["command"]
    worker = _services("worker.compose.yaml")["ray-worker"]
    for command in (head, worker["command"]):
        assert command[:2] == ["ray", "start"]
        start.make_context("start", command[2:])
    gpus = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpus["capabilities"] == ["gpu"] and gpus["count"] == "all"
    assert _option(worker["command"], "--address").endswith(":" + _option(head, "--port"))


def test_the_image_installs_the_cluster_requirements_and_copies_files_that_exist() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    copies = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    for sources in copies:
        for source in sources:
            assert source == "." or (REPO / source).exists(), source
    assert "requirements-cluster.txt" in dockerfile and "PYTHONPATH=/app" in dockerfile
    pins = (REPO / "requirements-cluster.txt").read_text()
    assert re.search(r"^ray\[default\]==[\d.]+$", pins, re.M) and re.search(
        r"^psycopg\[binary\]==", pins, re.M
    )
