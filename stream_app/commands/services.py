"""`stream-app services up|down|status [kafka] [cassandra] [registry]` (a cluster with
``STREAM_APP_SERVICES__CLUSTER=true``), and `services client-cert --out DIR`: a client
certificate from the project's CA for the local broker's mutual TLS."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from stream_app.settings import Settings


def _service_name(value: str) -> str:
    if value not in ("kafka", "cassandra", "registry"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a service (kafka, cassandra, registry)")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "services",
        help="run the local Kafka and Cassandra, and a schema registry if named (JVMs)",
        description="One broker and one node on 127.0.0.1, or with services.cluster "
        "(STREAM_APP_SERVICES__CLUSTER=true, see deploy/cluster.env) a broker per bootstrap "
        "server and a Cassandra node per contact point. The schema registry (Apicurio, "
        "Confluent's API at schema_registry.url) runs only when named: `services up registry`.",
    )
    parser.add_argument(
        "action",
        choices=["up", "down", "status", "client-cert"],
        help="client-cert: a key and certificate signed by the project's CA (<home>/tls, made "
        "if missing) for a client of the local SSL (mutual TLS) broker",
    )
    parser.add_argument(
        "service",
        nargs="*",
        type=_service_name,
        help="kafka, cassandra, registry (default: kafka and cassandra; down and status "
        "also a running registry)",
    )
    parser.add_argument("--out", type=Path, help="client-cert: the folder to write into")
    parser.add_argument(
        "--name", default="stream-app", help="client-cert: the certificate's common name "
        "and the files' name (default: stream-app)",
    )  # fmt: skip
    parser.set_defaults(run=run)


def client_cert(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.errors import ConfigurationError
    from stream_app.services.tls import issue_client_certificate

    if args.out is None or args.service:
        raise ConfigurationError("usage: stream-app services client-cert --out DIR [--name N]")
    folder = (settings.services.home / "tls").resolve()
    client = issue_client_certificate(folder, args.out.resolve(), args.name)
    print(f"# {client.certificate} (certificate), {client.key} (its key, owner-only), "
          f"signed by {client.ca_cert}")  # fmt: skip
    print("STREAM_APP_KAFKA__SECURITY_PROTOCOL=SSL")
    properties = json.dumps(client.properties())
    print(f"STREAM_APP_KAFKA__CLIENT_PROPERTIES={shlex.quote(properties)}")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_app.services import control

    if args.action == "client-cert":
        return client_cert(args, settings)

    if args.action == "up":
        control.up(settings, args.service)
        return 0
    if args.action == "down":
        control.down(settings, args.service)
        return 0
    statuses = control.status(settings, args.service)
    for s in statuses:
        pid = s.pid if s.pid is not None else "-"
        where = f"port {s.port:<6}" if s.host == "127.0.0.1" else f"{s.host}:{s.port}"
        print(f"{s.name:<11} pid {pid!s:<8} {where:<14} ready {s.ready!s:<5} {s.detail}")
    return 0 if all(s.ready for s in statuses) else 1
