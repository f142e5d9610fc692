"""Server jars from Maven Central and the JDK that runs them.

``pom.xml`` next to this module names the Kafka and Cassandra artifacts, one Maven profile per
service. The jars are copied once into ``<home>/lib/<service>/``; a stamp holding the pom's hash
marks a complete copy, so later runs download nothing and start at once.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from stream_app.errors import ServiceError

POM = Path(__file__).with_name("pom.xml")
STAMP = ".complete"
JAVA_MAJOR = 17  # Kafka 4 needs >= 17; Cassandra 5.0 runs on 11 or 17 only


def pom_digest(pom: Path = POM) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def jars_ready(lib_dir: Path, pom: Path = POM) -> bool:
    """Whether ``lib_dir`` holds a complete copy made from the current ``pom``."""
    stamp = lib_dir / STAMP
    return stamp.exists() and stamp.read_text().strip() == pom_digest(pom)


def maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError("Maven (mvn) is not on PATH; it fetches the server jars")
    return mvn


def run_maven(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    """Run Maven; a failure raises ``ServiceError`` with the command and its output's tail."""
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise ServiceError(f"{what} failed: {' '.join(command)}\n{tail}")


def install(partial: Path, lib_dir: Path, pom: Path = POM) -> None:
    """Stamp the complete copy in ``partial`` with ``pom``'s hash and put it at ``lib_dir``."""
    (partial / STAMP).write_text(pom_digest(pom) + "\n")
    shutil.rmtree(lib_dir, ignore_errors=True)
    partial.rename(lib_dir)


def ensure_jars(service: str, home: Path) -> tuple[Path, bool]:
    """The folder of ``service``'s jars, fetched with Maven if missing or stale.

    Returns the folder and whether anything was fetched.
    """
    lib_dir = (home / "lib" / service).resolve()
    if jars_ready(lib_dir):
        return lib_dir, False
    partial = lib_dir.with_name(f"{service}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        maven(), "-B", "-q", "-f", str(POM), "-P", service,
        "dependency:copy-dependencies", f"-DoutputDirectory={partial}",
    ]  # fmt: skip
    run_maven(command, f"fetching the {service} jars")
    install(partial, lib_dir)
    return lib_dir, True


def find_jar(lib_dir: Path, prefix: str) -> Path:
    """The jar in ``lib_dir`` whose name starts with ``prefix`` (e.g. ``jamm-``)."""
    matches = sorted(lib_dir.glob(f"{prefix}*.jar"))
    if not matches:
        raise ServiceError(f"no {prefix}*.jar in {lib_dir}; delete the folder to fetch again")
    return matches[0]


def _java_major(java: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, check=False, timeout=30
        ).stderr
    except OSError:
        return None
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None


def find_java(java_home: Path | None) -> Path:
    """A Java 17 executable: from the settings, else on PATH, else under /usr/lib/jvm."""
    candidates: list[Path] = []
    if java_home is not None:
        candidates.append(java_home / "bin" / "java")
    else:
        on_path = shutil.which("java")
        if on_path:
            candidates.append(Path(on_path))
        candidates.extend(sorted(Path("/usr/lib/jvm").glob(f"*{JAVA_MAJOR}*/bin/java")))
    for java in candidates:
        if _java_major(java) == JAVA_MAJOR:
            return java
    tried = ", ".join(str(c) for c in candidates) or "nothing found"
    raise ServiceError(
        f"Java {JAVA_MAJOR} is needed to run Kafka 4 and Cassandra 5.0 (tried: {tried}); "
        "set STREAM_APP_SERVICES__JAVA_HOME"
    )
