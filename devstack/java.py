# ruff: noqa: S603
# (This module runs java and mvn with argument lists it builds itself; no shell is involved.)
"""What Kafka runs on: the machine's Java 17+, and Kafka's jars, which Maven fetches from Maven
Central into `var/cache/kafka-<version>/` on the first run (see `deploy/kafka/pom.xml`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from devstack.processes import Echo, run_logged, tails
from devstack.settings import StackError, StackSettings

MAVEN_TIMEOUT_S = 1200


def find_java() -> Path:
    """`$JAVA_HOME/bin/java` or `java` on PATH, when it is Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    if candidate is None or not os.access(candidate, os.X_OK):
        found = shutil.which("java")
        candidate = Path(found) if found else None
    install = "install openjdk-17-jre-headless (`apt-get install -y openjdk-17-jre-headless`)"
    if candidate is None:
        raise StackError(f"Java 17 not found: {install}")
    try:
        result = subprocess.run(
            [str(candidate), "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        raise StackError(f"Java 17 not found ({candidate}: {exc}): {install}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        raise StackError(f"could not tell the Java version of {candidate}: {install}")
    major = int(match.group(1))
    if major == 1:  # "1.8.0_x"
        major = int(match.group(2) or 0)
    if major < 17:
        raise StackError(f"Java {major} at {candidate} is too old, Kafka needs 17+: {install}")
    return candidate


def ensure_kafka_jars(settings: StackSettings, echo: Echo) -> Path:
    """The directory of Kafka's jars, fetched by Maven unless a complete fetch is there."""
    jars = settings.kafka_jars_dir
    version = settings.kafka_version
    if (jars / ".complete").is_file():
        return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "mvn not found: install Maven (`apt-get install -y maven`); it fetches Kafka's jars "
            "from Maven Central"
        )
    pom = settings.kafka_pom
    if not pom.is_file():
        raise StackError(f"Kafka's pom {pom} is missing (set OCSEA_STACK_KAFKA_POM)")
    echo(f"fetching Kafka {version} jars from Maven Central (first run only)…")
    started = time.monotonic()
    # Fetched beside the cache and renamed into it once complete: no half-filled cache.
    partial = jars.with_name(f"{jars.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log = settings.logs_dir / "maven.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        mvn,
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
    ]
    try:
        code = run_logged(argv, log, cwd=pom.parent, timeout=MAVEN_TIMEOUT_S, append=False)
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"Maven took over 20 minutes\n{tails([log], 40)}") from exc
    core = partial / f"kafka_2.13-{version}.jar"
    if code != 0 or not core.is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise StackError(
            f"Maven could not fetch Kafka {version} (exit {code}; is "
            f"org.apache.kafka:kafka_2.13:{version} on Maven Central? set "
            f"OCSEA_STACK_KAFKA_VERSION)\n{tails([log], 40)}"
        )
    count = len(list(partial.glob("*.jar")))
    size = sum(path.stat().st_size for path in partial.glob("*.jar"))
    (partial / ".complete").write_text(f"kafka {version}: {count} jars\n")
    shutil.rmtree(jars, ignore_errors=True)
    partial.rename(jars)
    echo(
        f"  fetched {count} jars ({size / 2**20:.0f} MiB) into {jars} "
        f"in {time.monotonic() - started:.1f}s"
    )
    return jars
