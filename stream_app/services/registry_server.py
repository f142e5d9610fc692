"""A schema registry beside the local Kafka: Apicurio Registry 2.1 with its Confluent-compatible
API at ``/apis/ccompat/v6``, opt-in (``stream-app services up registry``).

Apicurio publishes its server to Maven Central only as a library jar of its Quarkus app, so
``registry/pom.xml`` beside this module builds the app here, once: it unpacks that jar as the
application and runs Quarkus' build, giving a runner jar and its ``lib/``. The result is kept
in ``<home>/lib/registry/`` with a stamp of the pom's hash, like the servers' jars. (2.1.5 is
the newest release whose whole build Central serves: later ones need artifacts it lacks.)

Schemas live in an H2 database file under ``<home>/registry/data/``, so their ids survive a
restart.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from stream_app.errors import ConfigurationError, ServiceError
from stream_app.services.jars import install, jars_ready, maven, run_maven
from stream_app.services.process import ServiceSpec
from stream_app.settings import Settings

POM = Path(__file__).with_name("registry") / "pom.xml"
API_PATH = "/apis/ccompat/v6"
RUNNER = "registry-runner.jar"
BUILT_RUNNER = "stream-app-registry-1-runner.jar"  # Quarkus' name: <artifactId>-<version>-runner
READY_LINE = "Listening on: http://"
_LOCAL_HOSTS = ("127.0.0.1", "localhost")


def local_port(settings: Settings) -> int:
    """The port of the local registry: the one in ``schema_registry.url``, which must name it."""
    url = settings.schema_registry.url
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in _LOCAL_HOSTS:
        raise ConfigurationError(
            f"schema_registry.url is {url}; `services` only runs a registry at http://127.0.0.1"
        )
    if parts.path.rstrip("/") != API_PATH:
        raise ConfigurationError(
            f"schema_registry.url is {url}; the local registry serves Confluent's API at {API_PATH}"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"schema_registry.url is {url}: {exc}") from exc
    if port is None:
        raise ConfigurationError(f"schema_registry.url is {url}; name the local registry's port")
    return port


def registry_properties(root: Path, port: int) -> dict[str, str]:
    """The Quarkus and Apicurio settings of the local registry, given as system properties
    (these outrank the app's own ``application.properties``)."""
    database = root / "data" / "registry"  # H2 adds .mv.db
    if ";" in str(database):
        raise ConfigurationError(f"services.home must not contain ';' (H2 URL): {root}")
    return {
        "quarkus.http.host": "127.0.0.1",
        "quarkus.http.port": str(port),
        "quarkus.datasource.jdbc.url": f"jdbc:h2:file:{database}",
        # The app's pool keeps 20 connections open; one embedded file wants few.
        "quarkus.datasource.jdbc.initial-size": "1",
        "quarkus.datasource.jdbc.min-size": "1",
        "quarkus.datasource.jdbc.max-size": "8",
        "quarkus.log.console.enable": "false",
        "quarkus.log.file.enable": "true",
        "quarkus.log.file.path": str(root / "logs" / "registry.log"),
        "quarkus.log.file.rotation.max-file-size": "10M",
        "quarkus.log.file.rotation.max-backup-index": "3",
    }


def ensure_registry_app(home: Path, java: Path) -> tuple[Path, bool]:
    """The folder of the built registry (its runner jar and ``lib/``), built with Maven if
    missing or made from another pom. Returns the folder and whether it was built now."""
    lib_dir = (home / "lib" / "registry").resolve()
    if jars_ready(lib_dir, POM):
        return lib_dir, False
    build = lib_dir.with_name("registry.build")
    partial = lib_dir.with_name("registry.partial")
    for folder in (build, partial):
        shutil.rmtree(folder, ignore_errors=True)
    build.mkdir(parents=True)
    shutil.copy(POM, build / "pom.xml")
    # Maven and Quarkus' build run on the JDK that will run the registry.
    env = {**os.environ, "JAVA_HOME": str(java.resolve().parent.parent)}
    command = [maven(), "-B", "-q", "-f", str(build / "pom.xml"), "package"]
    run_maven(command, "building the schema registry", env)
    partial.mkdir()
    (build / "target" / BUILT_RUNNER).rename(partial / RUNNER)
    (build / "target" / "lib").rename(partial / "lib")  # the runner's Class-Path: lib/...
    shutil.rmtree(build)
    install(partial, lib_dir, POM)
    return lib_dir, True


def _get_json(url: str) -> object:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ServiceError(f"GET {url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ServiceError(f"GET {url}: {exc}") from exc


def probe_registry(url: str, port: int) -> None:
    """Ready when Quarkus' readiness check is UP and the Confluent API lists the subjects."""
    health = _get_json(f"http://127.0.0.1:{port}/health/ready")
    if not isinstance(health, dict) or health.get("status") != "UP":
        raise ServiceError(f"the registry's readiness check says {health}")
    subjects = _get_json(f"{url.rstrip('/')}/subjects")
    if not isinstance(subjects, list):
        raise ServiceError(f"{url}/subjects answered {subjects!r}, not a list")


def registry_specs(settings: Settings, lib_dir: Path, java: Path) -> list[ServiceSpec]:
    """The registry's one process."""
    port = local_port(settings)
    root = (settings.services.home / "registry").resolve()
    properties = registry_properties(root, port)
    heap = settings.services.registry_heap_mb
    command = [
        str(java),
        "-Xms64m",
        f"-Xmx{heap}m",
        "-XX:+UseSerialGC",  # a small heap on a small machine: no parallel GC threads
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        "-Dstream-app.service=registry",
        *(f"-D{key}={value}" for key, value in properties.items()),
        "-jar",
        str(lib_dir / RUNNER),
    ]

    def prepare() -> None:
        for folder in (root / "data", root / "logs"):
            folder.mkdir(parents=True, exist_ok=True)

    return [
        ServiceSpec(
            name="registry",
            port=port,
            command=command,
            run_dir=root.parent / "run",
            console_log=root / "logs" / "console.log",
            server_log=root / "logs" / "registry.log",
            ready_line=READY_LINE,
            probe=lambda: probe_registry(settings.schema_registry.url, port),
            prepare=prepare,
        )
    ]
