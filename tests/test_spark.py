"""The Spark session recdistill opens: a local driver reachable from this machine only."""

from __future__ import annotations

import json

import psutil

from tests.network import LOOPBACK, listening_addresses


def test_a_local_driver_listens_on_loopback_only(spark):
    """Finding 6: without the loopback binding the driver's RPC and block manager took the external address."""
    jvm = [p.pid for p in psutil.Process().children(recursive=True) if p.name() == "java"]
    addresses = listening_addresses(jvm)
    assert jvm and addresses and addresses <= LOOPBACK, addresses
    assert spark.conf.get("spark.driver.bindAddress") == "127.0.0.1"


def _jvm_flags(session) -> list[str]:
    return list(session._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())


def test_submit_java_options_reach_a_submitted_jobs_jvm_but_not_an_in_process_session(spark, tmp_path):
    """The tiny profile's C1-only flag is for one-job JVMs; the test session's JVM runs many jobs with C2.
    Both map the class-data archive set-up built: under -Xshare:on a JVM that cannot map it does not start."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from pipeline.config import load_settings
    from pipeline.spark import class_archive, submit_args

    settings = load_settings("tiny")
    flag = settings.spark.submit_java_options
    archive = f"-XX:SharedArchiveFile={class_archive(settings)}"
    assert class_archive(settings).is_file(), "set-up (python -m pipeline.spark) builds it"
    assert flag and flag not in _jvm_flags(spark) and archive in _jvm_flags(spark)
    strict = settings.model_copy(update={"spark": settings.spark.model_copy(
        update={"submit_java_options": f"{flag} -Xshare:on"})})
    app = tmp_path / "flags.py"
    app.write_text("from pipeline.config import load_settings\nfrom pipeline.spark import get_spark\n"
                   "import json\nspark = get_spark(load_settings('tiny'))\n"
                   "print('FLAGS', json.dumps(list(spark._jvm.java.lang.management.ManagementFactory"
                   ".getRuntimeMXBean().getInputArguments())))\n")
    bin_dir = Path(sys.executable).parent
    done = subprocess.run([str(bin_dir / "spark-submit"), "--master", "local[1]", *submit_args(strict), str(app)],
                          capture_output=True, text=True, env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("FLAGS ")]
    flags = json.loads(line.removeprefix("FLAGS "))
    assert flag in flags and archive in flags and any(f.startswith("-Dlog4j2.configurationFile=") for f in flags)
