"""The one way recdistill opens a Spark session: Delta enabled, local mode unless configured, quiet.

The Delta jars are resolved by Ivy once, at set-up (`python -m pipeline.spark`, run by `make`),
which prints Ivy's report; the resolved jar files are recorded beside the Ivy cache and every later
session and spark-submit loads them directly, so Ivy neither runs nor prints again. Without that
record (or with a jar missing) a session resolves again, records, and carries on.

Set-up then builds a class-data archive (AppCDS): one JVM runs every job on tiny data and dumps the
classes it loaded; every later driver and executor JVM maps them (`-XX:SharedArchiveFile`). A tiny
job's JVM spends most of its life loading and warming up. Where the archive is missing or does not
match the JVM or the class path, the JVM ignores it and loads classes as usual.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Settings
from pipeline.progress import Step

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Known noise, filtered at its source: PySpark 4.2 warns on every start under pandas 3; recdistill reads
# tables with delta-rs and converts nothing through pandas in Spark (the test suite runs on pandas 3).
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

RESOURCES = Path(__file__).resolve().parent / "spark_conf"
# Maven Central only: Spark's default resolver chain also asks repos.spark-packages.org, which
# printed ~75 lines of "not found" and proxy warnings at set-up where it is not reachable.
IVY_SETTINGS = RESOURCES / "ivysettings.xml"
# Spark's default log4j profile logs every start at INFO; this one keeps warnings and errors.
LOG4J = RESOURCES / "log4j2.properties"
JARS_RECORD = "delta-jars.json"
CLASS_ARCHIVE = "spark-classes.jsa"

DELTA_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # delta-rs readers must be able to read every table: keep deletion vectors off.
    "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
    # Day partitions and event times are UTC everywhere.
    "spark.sql.session.timeZone": "UTC",
    # Spark's console bar redraws with \r; stage progress goes through pipeline.progress instead.
    "spark.ui.showConsoleProgress": "false",
    "spark.ui.enabled": "false",
}

# A local-mode driver serves only this machine: without these it binds its RPC and block-manager ports
# to the machine's external address, unauthenticated. A cluster master needs a reachable driver: set
# spark.driver.host / bindAddress in `spark.conf` (RECDISTILL_SPARK__CONF) for it.
LOCAL_CONF: dict[str, str] = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"}


def get_spark(settings: Settings) -> SparkSession:
    """Return the active session or build one from `settings.spark`.

    Under `spark-submit` the launcher already resolved jars and started the JVM with
    `submit_conf`; there the builder's settings only fill what is unset.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    cfg = settings.spark
    builder = SparkSession.builder
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        # Not under spark-submit: our config picks the master. Under spark-submit, --master rules.
        builder = builder.master(cfg.master)
    builder = builder.appName(cfg.app_name)
    jars = recorded_jars(settings)
    for key, value in {**_session_conf(settings), **_jar_conf(settings, jars)}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if jars is None:
        _record_jars(settings, spark)
    StageProgress(spark).start()
    log.info("spark session up: master=%s version=%s", cfg.master, spark.version)
    return spark


def _session_conf(settings: Settings) -> dict[str, str]:
    """Every session setting: Delta, the driver's logging, sizes, the Ivy cache, loopback binding in local mode,
    then `spark.conf`."""
    cfg = settings.spark
    archive = _archive_flags(settings)
    return {
        **DELTA_CONF,
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J.as_uri()} {archive}".strip(),
        **({"spark.executor.extraJavaOptions": archive} if archive else {}),
        "spark.driver.memory": cfg.driver_memory,
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.jars.ivy": str(cfg.ivy_dir),
        **(LOCAL_CONF if cfg.master.startswith("local") else {}),
        **cfg.conf,
    }


def class_archive(settings: Settings) -> Path:
    """Where set-up writes the class-data archive of Spark's JVMs (beside the Ivy cache it loads jars from)."""
    return settings.spark.ivy_dir / CLASS_ARCHIVE


def _archive_flags(settings: Settings) -> str:
    path = class_archive(settings)
    return f"-XX:SharedArchiveFile={path}" if settings.spark.class_archive and path.is_file() else ""


def build_class_archive(settings: Settings) -> Path:
    """Spark-submit `spark_jobs/class_archive.py` with a JVM that archives the classes it loaded at exit."""
    import subprocess
    import sys
    import tempfile

    from pipeline.config import load_settings

    path = class_archive(settings)
    # The dumping JVM maps no archive (a JVM cannot dump on top of a dynamic archive it maps); the previous
    # one stays in place until the new one replaces it, so a failed build leaves it as it was.
    tiny = load_settings("tiny", spark={"ivy_dir": str(settings.spark.ivy_dir), "class_archive": False})
    conf = submit_conf(tiny)
    dumped = path.with_suffix(f".{os.getpid()}.tmp")
    conf["spark.driver.extraJavaOptions"] += f" -XX:ArchiveClassesAtExit={dumped}"
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as scratch:
        command = [str(bin_dir / "spark-submit"), "--master", "local[2]",
                   *_as_args(conf),
                   job_file("class_archive"), "--scratch", scratch]
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
    if done.returncode != 0 or not dumped.is_file():
        dumped.unlink(missing_ok=True)
        raise RuntimeError(f"building the class-data archive failed ({done.returncode}):\n{done.stderr[-4000:]}")
    dumped.replace(path)
    return path


def _jar_conf(settings: Settings, jars: list[str] | None) -> dict[str, str]:
    """The recorded jar files, or the Delta package for Ivy to resolve (Maven Central only)."""
    if jars is not None:
        return {"spark.jars": ",".join(jars)}
    return {"spark.jars.packages": delta_package(), "spark.jars.ivySettings": str(IVY_SETTINGS)}


def recorded_jars(settings: Settings) -> list[str] | None:
    """The Delta jar files Ivy resolved for the installed delta-spark, if recorded and all present."""
    path = settings.spark.ivy_dir / JARS_RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    jars = record.get("jars", []) if record.get("package") == delta_package() else []
    if not jars or not all(Path(jar.removeprefix("file:")).is_file() for jar in jars):
        return None
    return jars


def _record_jars(settings: Settings, spark: SparkSession) -> None:
    jars = [jar for jar in spark.sparkContext.getConf().get("spark.jars", "").split(",") if jar]
    if not jars:
        return
    path = settings.spark.ivy_dir / JARS_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"package": delta_package(), "jars": jars}, indent=1))
    tmp.replace(path)


class StageProgress(threading.Thread):
    """Reports the progress of Spark stages that run longer than `LONG_STAGE_S` (see pipeline.progress).

    Polls Spark's status tracker; a long job (sequences over months of history) otherwise ran for
    minutes without a line.
    """

    POLL_S = 1.0
    LONG_STAGE_S = 5.0

    def __init__(self, spark: SparkSession) -> None:
        super().__init__(name="spark-stage-progress", daemon=True)
        self._context = spark.sparkContext

    def run(self) -> None:
        first_seen: dict[int, float] = {}
        steps: dict[int, Step] = {}
        try:
            tracker = self._context.statusTracker()
            while self._context._jsc is not None:
                active = set(tracker.getActiveStageIds())
                now = time.monotonic()
                for stage_id in active:
                    first_seen.setdefault(stage_id, now)
                    info = tracker.getStageInfo(stage_id)
                    if info is None:
                        continue
                    if stage_id not in steps and now - first_seen[stage_id] >= self.LONG_STAGE_S:
                        steps[stage_id] = Step(_stage_name(stage_id, info.name), info.numTasks, "task")
                    if stage_id in steps:
                        steps[stage_id].advance(info.numCompletedTasks - steps[stage_id].done)
                for stage_id in [s for s in steps if s not in active]:
                    step, info = steps.pop(stage_id), tracker.getStageInfo(stage_id)
                    if info is not None:
                        step.advance(info.numCompletedTasks - step.done)
                    step.close()
                for stage_id in [s for s in first_seen if s not in active]:
                    del first_seen[stage_id]
                time.sleep(self.POLL_S)
        except Exception:  # noqa: BLE001 - the session stopped under the poller: nothing left to report
            for step in steps.values():
                step.close()


def delta_package() -> str:
    """Maven coordinates of the Delta jars matching the installed delta-spark and pyspark.

    Named as `configure_spark_with_delta_pip` names them; spark-submit needs them as `--packages`
    because its launcher resolves jars before the job's own builder runs.
    """
    from importlib.metadata import version

    spark_major_minor = ".".join(version("pyspark").split(".")[:2])
    return f"io.delta:delta-spark_{spark_major_minor}_2.13:{version('delta-spark')}"


def _stage_name(stage_id: int, call_site: str) -> str:
    """`spark stage N (save)`: the stage's call site without its source location; lambdas' names say nothing."""
    site = call_site.split(" at ")[0]
    return f"spark stage {stage_id}" + (f" ({site})" if site and not site.startswith("$") else "")


def submit_conf(settings: Settings) -> dict[str, str]:
    """The `--conf` pairs a spark-submit of a recdistill job needs: Delta, session settings, jars, JVM flags.

    The same values `get_spark` puts on its builder, given to the launcher, where memory, the jars
    and the driver's logging must be known before the JVM starts; then `spark.submit_java_options`,
    for the driver and the executors of an application that runs one job and exits.
    """
    conf = {**_session_conf(settings), **_jar_conf(settings, recorded_jars(settings))}
    flags = settings.spark.submit_java_options
    if flags:
        conf["spark.driver.extraJavaOptions"] = f"{conf['spark.driver.extraJavaOptions']} {flags}"
        conf["spark.executor.extraJavaOptions"] = f"{conf.get('spark.executor.extraJavaOptions', '')} {flags}".strip()
    return conf


def submit_args(settings: Settings) -> list[str]:
    """`submit_conf` as spark-submit's command-line arguments (`--conf key=value` …), for callers outside Airflow."""
    return _as_args(submit_conf(settings))


def _as_args(conf: dict[str, str]) -> list[str]:
    return [item for key, value in conf.items() for item in ("--conf", f"{key}={value}")]


def job_file(job: str) -> str:
    """Path of the installed `spark_jobs.<job>` module: the application file spark-submit runs."""
    from importlib.util import find_spec

    spec = find_spec(f"spark_jobs.{job}")
    if spec is None or spec.origin is None:
        raise ValueError(f"no Spark job module spark_jobs.{job}; expected a file spark_jobs/{job}.py")
    return spec.origin


def main() -> None:
    """`python -m pipeline.spark` (set-up): resolve the Delta jars once with Ivy and record them, then build
    the class-data archive."""
    from pipeline.config import load_settings

    settings = load_settings()
    record = settings.spark.ivy_dir / JARS_RECORD
    record.unlink(missing_ok=True)
    spark = get_spark(settings)
    print(f"spark {spark.version} with delta ready (jars cached under {settings.spark.ivy_dir}, recorded in {record})")
    spark.stop()
    started = time.monotonic()
    archive = build_class_archive(settings)
    print(f"class-data archive of Spark's JVMs built in {time.monotonic() - started:.0f} s: {archive} "
          f"({archive.stat().st_size >> 20} MiB)")


if __name__ == "__main__":
    main()
