"""The services of the cluster-shaped run, each on 127.0.0.1 on a free port, each stoppable on its own.

A private PostgreSQL cluster (Debian's binaries, data in the run folder, never the system's cluster),
a Spark standalone master and worker started by the pinned PySpark's own launch classes, and an
MLflow tracking server over PostgreSQL (`mlflow/server.sh`). Every process is started in a session of
its own and its session id written to `<run>/pids`, so `integration/run.sh` can stop whatever a
crashed run left behind.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pipeline.config import PROJECT_ROOT

log = logging.getLogger(__name__)
HOST = "127.0.0.1"
VENV_BIN = Path(sys.executable).parent
PIDS_FILE = "pids"  # one session id a line, read by run.sh's cleanup trap


def free_port() -> int:
    """A port nothing listens on now on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until(what: str, ready: Callable[[], bool], timeout_s: float, log_file: Path | None = None) -> None:
    """Poll `ready` until it is true; fail naming `what` (and the tail of its log) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.5)
    tail = log_file.read_text(errors="replace")[-4000:] if log_file and log_file.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s\n{tail}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (a local URL we built)
        return response.status == 200


@dataclass
class Process:
    """A long-running command in its own session, its output in `log`."""

    name: str
    command: list[str]
    env: Mapping[str, str]
    log: Path
    popen: subprocess.Popen | None = None

    def start(self, run_dir: Path) -> Process:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.command, env=dict(self.env), stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        with (run_dir / PIDS_FILE).open("a") as pids:
            pids.write(f"{self.popen.pid}\n")
        log.info("started %s (pid %d): %s", self.name, self.popen.pid, shlex.join(self.command))
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole session, as a lost machine would (children such as executors too)."""
        if self.popen is not None:
            signal_session(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def stop(self, grace_s: float = 30) -> None:
        """SIGTERM the session, then SIGKILL what is left after `grace_s`."""
        if self.popen is None:
            return
        signal_session(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM for %.0fs: killing it", self.name, grace_s)
        signal_session(self.popen.pid, signal.SIGKILL)  # children that outlived their parent
        self.popen.wait()


def signal_session(sid: int, sig: signal.Signals) -> None:
    """Signal every process of session `sid`: Airflow puts each task (and its spark-submit) in a process
    group of its own, but they stay in the session of the scheduler that we started."""
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class Postgres:
    """A private PostgreSQL cluster in `<run>/postgres`: superuser over the socket only, apps over TCP with passwords.

    The server refuses to run as root, so under root every command runs as the `postgres` user that
    Debian's package creates.
    """

    run_dir: Path
    port: int = field(default_factory=free_port)

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "postgres" / "data"

    @property
    def socket_dir(self) -> Path:
        return self.run_dir / "postgres" / "socket"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "logs" / "postgres.log"

    def start(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            # The socket accepts the superuser without a password: only its owner may reach it.
            self.socket_dir.mkdir(parents=True, mode=0o700)
            self.data_dir.mkdir(parents=True, mode=0o700)
            self._own(self.data_dir.parent)
            self._as_owner([_pg_bin("initdb"), "--pgdata", str(self.data_dir), "--username", "postgres",
                            "--auth-local", "trust", "--auth-host", "scram-sha-256", "--encoding", "UTF8",
                            "--no-instructions"])
        self.log_file.touch()
        self._own(self.log_file)
        options = (f"-c listen_addresses={HOST} -c port={self.port} -c unix_socket_directories={self.socket_dir} "
                   f"-c max_connections=100 -c shared_buffers=64MB -c fsync=off")
        self._as_owner([_pg_bin("pg_ctl"), "--pgdata", str(self.data_dir), "--log", str(self.log_file),
                        "--options", options, "--wait", "start"])

    @property
    def pid(self) -> int:
        """The postmaster's pid (first line of postmaster.pid)."""
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._as_owner([_pg_bin("pg_ctl"), "--pgdata", str(self.data_dir), "--mode", "fast", "--wait", "stop"])

    def restart(self) -> None:
        """A fast restart: every client connection is cut, as in a failover or a crash-restart."""
        self._as_owner([_pg_bin("pg_ctl"), "--pgdata", str(self.data_dir), "--mode", "fast", "--wait", "restart"])

    def create_databases(self, passwords: Mapping[str, str]) -> None:
        """One role and database each for Airflow and MLflow, by the same script compose runs on first start."""
        env = {**os.environ, "PGHOST": str(self.socket_dir), "PGPORT": str(self.port), "POSTGRES_USER": "postgres",
               "AIRFLOW_DB_PASSWORD": passwords["airflow"], "MLFLOW_DB_PASSWORD": passwords["mlflow"]}
        subprocess.run(["bash", str(PROJECT_ROOT / "docker" / "postgres" / "init-databases.sh")], env=env, check=True,
                       stdout=subprocess.DEVNULL)

    def url(self, user: str, password: str) -> str:
        return f"postgresql+psycopg2://{user}:{password}@{HOST}:{self.port}/{user}"

    def superuser_url(self, database: str) -> str:
        """The superuser over the private socket (no password: only the socket's owner reaches it)."""
        return f"postgresql+psycopg2://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    def backup(self, database: str, dump: Path) -> None:
        """`pg_dump --format=custom`, what docs/deploy.md prescribes for the MLflow database."""
        self._client(["pg_dump", "--format=custom", f"--dbname={database}", f"--file={dump}"])

    def restore(self, dump: Path, database: str) -> None:
        """`pg_restore` of a `backup` into a new, empty `database`."""
        self._client(["createdb", database])
        self._client(["pg_restore", "--no-owner", f"--dbname={database}", str(dump)])

    def _client(self, command: list[str]) -> None:
        env = {**os.environ, "PGHOST": str(self.socket_dir), "PGPORT": str(self.port), "PGUSER": "postgres"}
        subprocess.run([_pg_bin(command[0]), *command[1:]], env=env, check=True, stdout=subprocess.DEVNULL)

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
                os.chown(item, owner.pw_uid, owner.pw_gid)

    def _as_owner(self, command: list[str]) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, stdout=subprocess.DEVNULL, cwd="/")


def _pg_bin(name: str) -> str:
    """A PostgreSQL server binary: Debian keeps them per major version, off PATH."""
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return str(candidates[-1])
    raise FileNotFoundError(f"PostgreSQL's {name} not found under /usr/lib/postgresql/*/bin: "
                            f"install Debian's postgresql package (integration/run.sh does)")


@dataclass
class SparkCluster:
    """A standalone master and one worker from this venv's PySpark; the worker can be killed and restarted."""

    run_dir: Path
    worker_cores: int = 2
    worker_memory: str = "2g"
    port: int = field(default_factory=free_port)
    ui_port: int = field(default_factory=free_port)
    worker_ui_port: int = field(default_factory=free_port)
    master: Process | None = None
    worker: Process | None = None

    @property
    def url(self) -> str:
        return f"spark://{HOST}:{self.port}"

    @property
    def work_dir(self) -> Path:
        """Where the worker runs executors (each one's stdout/stderr under app-*/<id>/)."""
        return self.run_dir / "spark-work"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "SPARK_LOCAL_IP": HOST, "SPARK_LOG_DIR": str(self.run_dir / "logs"),
                # The daemons only schedule; executors get their own memory.
                "SPARK_DAEMON_MEMORY": "256m",
                # No REST submission server: it would take the fixed port 6066.
                "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
                # Executors run this venv's Python and see this checkout first, like the drivers.
                "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(PROJECT_ROOT)}

    def start(self) -> None:
        self.master = Process("spark-master", [str(VENV_BIN / "spark-class"), "org.apache.spark.deploy.master.Master",
                                               "--host", HOST, "--port", str(self.port),
                                               "--webui-port", str(self.ui_port)],
                              self._env(), self.run_dir / "logs" / "spark-master.log").start(self.run_dir)
        wait_until("spark master", lambda: self.state()["status"] == "ALIVE", 120, self.master.log)
        self.start_worker()

    def start_worker(self) -> None:
        self.work_dir.mkdir(exist_ok=True)
        self.worker = Process("spark-worker", [str(VENV_BIN / "spark-class"), "org.apache.spark.deploy.worker.Worker",
                                               "--host", HOST, "--webui-port", str(self.worker_ui_port),
                                               "--cores", str(self.worker_cores), "--memory", self.worker_memory,
                                               "--work-dir", str(self.work_dir), self.url],
                              self._env(), self.run_dir / "logs" / "spark-worker.log").start(self.run_dir)
        wait_until("spark worker", lambda: self.alive_workers() == 1, 120, self.worker.log)

    def kill_worker(self) -> None:
        """SIGKILL the worker and its executors; the master notices the worker is gone."""
        assert self.worker is not None
        self.worker.kill()
        wait_until("the master to drop the killed worker", lambda: self.alive_workers() == 0, 120)

    def state(self) -> dict:
        """The master's status page as JSON (workers, applications)."""
        url = f"http://{HOST}:{self.ui_port}/json/"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (a local URL we built)
            return json.load(response)

    def executor_running_task(self) -> bool:
        """True once an executor of a running application has logged a task it runs."""
        return any("Running task" in stderr.read_text(errors="replace")
                   for app in self.state()["activeapps"] for stderr in (self.work_dir / app["id"]).glob("*/stderr"))

    def alive_workers(self) -> int:
        return sum(worker["state"] == "ALIVE" for worker in self.state()["workers"])

    def stop(self) -> None:
        for process in (self.worker, self.master):
            if process is not None:
                process.stop()


@dataclass
class MlflowServer:
    """`mlflow/server.sh` over PostgreSQL, artifacts in `<run>/mlartifacts`."""

    run_dir: Path
    backend_uri: str
    port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": self.backend_uri,
               "MLFLOW_ARTIFACTS_DESTINATION": str(self.run_dir / "mlartifacts"),
               "MLFLOW_HOST": HOST, "MLFLOW_PORT": str(self.port), "MLFLOW_WORKERS": "1",
               "MLFLOW_BIN": str(VENV_BIN)}
        self.process = Process("mlflow", ["bash", str(PROJECT_ROOT / "mlflow" / "server.sh")], env,
                               self.run_dir / "logs" / "mlflow.log").start(self.run_dir)
        wait_until("mlflow server", lambda: http_ok(f"{self.url}/health"), 300, self.process.log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """The generated credentials and addresses, readable by the owner only (`source`-able by a shell)."""
    path.touch(mode=0o600)
    path.write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in sorted(values.items())))


def new_password() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class AirflowServices:
    """Airflow's scheduler (LocalExecutor) and the execution API its task processes report to.

    The scheduler creates interval runs as in production (unpausing a DAG adds a run for its latest
    interval, the real yesterday), and serves no logs over HTTP: task logs stay on local disk.
    """

    run_dir: Path
    env: Mapping[str, str]
    port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)

    @property
    def service_env(self) -> dict[str, str]:
        return {**self.env, "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{HOST}:{self.port}/execution/"}

    def start(self) -> None:
        logs = self.run_dir / "logs"
        commands = {"airflow-api-server": ["airflow", "api-server", "--apps", "execution", "--host", HOST,
                                           "--port", str(self.port), "--workers", "1"],
                    "airflow-scheduler": ["airflow", "scheduler", "--skip-serve-logs"]}
        for name, command in commands.items():
            self.processes.append(Process(name, command, self.service_env, logs / f"{name}.log").start(self.run_dir))
        wait_until("airflow execution API", lambda: http_ok(f"http://{HOST}:{self.port}/execution/health"), 180,
                   self.processes[0].log)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop(grace_s=60)


def listening_addresses(pids: list[int]) -> set[tuple[str, int]]:
    """Every (address, port) the processes `pids` and their descendants listen on over TCP."""
    found = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                # Java listens on IPv4-mapped IPv6 sockets: ::ffff:127.0.0.1 is 127.0.0.1.
                found |= {(c.laddr.ip.removeprefix("::ffff:"), c.laddr.port)
                          for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
            except psutil.NoSuchProcess:
                pass
    return found
