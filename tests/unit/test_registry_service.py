"""The local schema registry's configuration, command and selection, without starting it."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from stream_app.errors import ConfigurationError, ServiceError
from stream_app.services import control, process
from stream_app.services.registry_server import (
    local_port,
    probe_registry,
    registry_properties,
    registry_specs,
)
from stream_app.settings import SchemaRegistrySettings, ServicesSettings, Settings


def _settings(tmp_path: Path, url: str = "http://127.0.0.1:8081/apis/ccompat/v6") -> Settings:
    return Settings(
        schema_registry=SchemaRegistrySettings(url=url),
        services=ServicesSettings(home=tmp_path / "home", registry_heap_mb=192),
    )


def test_the_port_comes_from_the_clients_url(tmp_path: Path) -> None:
    assert local_port(Settings()) == 8081
    assert local_port(_settings(tmp_path, "http://localhost:18081/apis/ccompat/v6/")) == 18081


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://registry.example:8081/apis/ccompat/v6", "only runs a registry at"),
        ("https://127.0.0.1:8081/apis/ccompat/v6", "only runs a registry at"),
        ("http://127.0.0.1:8081", "serves Confluent's API at /apis/ccompat/v6"),
        ("http://127.0.0.1:8081/apis/ccompat/v7", "serves Confluent's API at /apis/ccompat/v6"),
        ("http://127.0.0.1/apis/ccompat/v6", "name the local registry's port"),
        ("http://127.0.0.1:99999/apis/ccompat/v6", "out of range"),
    ],
)
def test_a_url_the_local_registry_cannot_serve_is_a_configuration_error(
    tmp_path: Path, url: str, says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        local_port(_settings(tmp_path, url))


def test_properties_bind_loopback_and_keep_schemas_in_a_file(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    properties = registry_properties(root, 18081)
    assert properties["quarkus.http.host"] == "127.0.0.1"
    assert properties["quarkus.http.port"] == "18081"
    assert properties["quarkus.datasource.jdbc.url"] == f"jdbc:h2:file:{root}/data/registry"
    assert properties["quarkus.log.file.path"] == f"{root}/logs/registry.log"
    assert properties["quarkus.log.console.enable"] == "false"
    assert int(properties["quarkus.datasource.jdbc.max-size"]) <= 8


def test_a_home_the_h2_url_cannot_hold_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="must not contain ';'"):
        registry_properties(tmp_path / "a;b", 18081)


def test_the_command_runs_the_built_app_with_the_settings_heap(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "http://127.0.0.1:18082/apis/ccompat/v6")
    (spec,) = registry_specs(settings, tmp_path / "lib", Path("/jdk/bin/java"))
    home = (tmp_path / "home").resolve()
    assert spec.name == "registry"
    assert spec.port == 18082
    assert spec.command[0] == "/jdk/bin/java"
    assert "-Xmx192m" in spec.command
    assert "-Dstream-app.service=registry" in spec.command
    assert "-Dquarkus.http.port=18082" in spec.command
    assert spec.command[-2:] == ["-jar", str(tmp_path / "lib" / "registry-runner.jar")]
    assert spec.run_dir == home / "run"  # beside Kafka's and Cassandra's pid files
    assert spec.server_log == home / "registry" / "logs" / "registry.log"


def test_up_starts_the_registry_only_when_named(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert control.DEFAULT_SERVICES == ("kafka", "cassandra")
    specs = {
        name: control.SERVICES[name](settings, tmp_path, Path("java")) for name in control.SERVICES
    }
    assert [spec.name for spec in control.start_waves(specs)[0]] == [
        "kafka",
        "cassandra",
        "registry",
    ]


def test_down_and_status_cover_the_registry_while_it_runs(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert control._default_running(settings) == ["kafka", "cassandra"]
    (spec,) = registry_specs(settings, tmp_path, Path("java"))
    spec.run_dir.mkdir(parents=True)
    fields = process.stat_fields(os.getpid())
    assert fields is not None
    spec.pid_file.write_text(f"{os.getpid()} {fields[19]}\n")  # a live process: this one
    assert control._default_running(settings) == ["kafka", "cassandra", "registry"]
    # A registry that is not local is none of `services`' business, and no error either.
    remote = settings.model_copy(
        update={"schema_registry": SchemaRegistrySettings(url="http://registry.example:8081")}
    )
    assert control._default_running(remote) == ["kafka", "cassandra"]


class _Registry(BaseHTTPRequestHandler):
    """Answers as a registry would: readiness ``status`` and the subjects list."""

    health = "UP"

    def do_GET(self) -> None:  # http.server names it
        if self.path == "/health/ready":
            code, body = (200 if self.health == "UP" else 503), {"status": self.health}
        elif self.path == "/apis/ccompat/v6/subjects":
            code, body = 200, ["orders-value"]
        else:
            code, body = 404, {"error_code": 404}
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[tuple[int, type[_Registry]]]:
    handler = type("Handler", (_Registry,), {})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def test_the_probe_wants_readiness_up_and_the_api_answering(
    answering: tuple[int, type[_Registry]],
) -> None:
    port, handler = answering
    probe_registry(f"http://127.0.0.1:{port}/apis/ccompat/v6", port)
    with pytest.raises(ServiceError, match="/subjects: HTTP 404"):
        probe_registry(f"http://127.0.0.1:{port}/apis/ccompat/v7", port)
    handler.health = "DOWN"
    with pytest.raises(ServiceError, match="health/ready: HTTP 503"):
        probe_registry(f"http://127.0.0.1:{port}/apis/ccompat/v6", port)
