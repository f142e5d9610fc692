"""A private certificate authority and the local servers' certificate, made by the project.

``stream-app services up`` calls :func:`ensure_certificates` when the settings ask for TLS.
It writes into ``<home>/tls/``:

- ``ca.pem``: the CA certificate. Clients trust it (``kafka.ssl_ca_file``,
  ``cassandra.ssl_ca_file``).
- ``ca.key``: the CA's private key (mode 0600). Only this function reads it.
- ``server.pem``: the servers' private key followed by their certificate chain (mode 0600),
  valid for ``127.0.0.1``, ``::1`` and ``localhost``.

:func:`issue_client_certificate` signs a client's certificate with the same CA, for a broker
that requires one (``security_protocol`` SSL: mutual TLS).

Existing files are kept, so clients keep trusting the same CA across restarts. A server
certificate within :data:`RENEW_BEFORE` of its end, or not signed by the current CA, is
made again.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stream_app.errors import ConfigurationError
from stream_app.services.private_files import write_private

CA_DAYS = 3650
SERVER_DAYS = 397  # the longest validity browsers and most TLS stacks accept
RENEW_BEFORE = dt.timedelta(days=30)
HOSTS = ("localhost",)
ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA and the servers' key and certificate lie."""

    ca_cert: Path
    ca_key: Path
    server: Path  # private key (PKCS#8, unencrypted) then certificate, in PEM

    @classmethod
    def under(cls, folder: Path) -> TlsFiles:
        return cls(folder / "ca.pem", folder / "ca.key", folder / "server.pem")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_ca(files: TlsFiles) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stream-app"),
            x509.NameAttribute(NameOID.COMMON_NAME, "stream-app local CA"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(files.ca_key, _key_pem(key))
    files.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.ca_cert.chmod(0o644)  # public (whatever the umask): clients of other users read it


def _signed(
    files: TlsFiles,
    subject: x509.Name,
    usages: list[x509.ObjectIdentifier],
    names: list[x509.GeneralName] | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new key and its certificate for ``subject``, signed by the CA of ``files``."""
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{files.ca_key} does not hold the EC key this module writes")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _make_server(files: TlsFiles) -> None:
    names: list[x509.GeneralName] = [x509.DNSName(host) for host in HOSTS]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ADDRESSES]
    key, cert = _signed(
        files,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        names,
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + files.ca_cert.read_bytes()
    write_private(files.server, _key_pem(key) + chain)


@dataclass(frozen=True)
class ClientFiles:
    """A client's certificate (then the CA's) and its private key, and the CA to trust."""

    certificate: Path
    key: Path  # PKCS#8 PEM, unencrypted, mode 0600
    ca_cert: Path

    def properties(self) -> dict[str, str]:
        """The librdkafka properties that present this certificate and trust the CA."""
        return {
            "ssl.ca.location": str(self.ca_cert),
            "ssl.certificate.location": str(self.certificate),
            "ssl.key.location": str(self.key),
        }


def issue_client_certificate(folder: Path, out: Path, name: str) -> ClientFiles:
    """A key and a client certificate (common name ``name``, client authentication only)
    signed by the CA under ``folder`` (made if missing), written as ``<out>/<name>.pem`` and
    ``<out>/<name>.key``. A second call for the same name issues a new pair."""
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ConfigurationError(f"{name!r} is not a client name (letters, digits, - _ .)")
    files = ensure_certificates(folder)
    subject = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stream-app"),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ]
    key, cert = _signed(files, x509.Name(subject), [ExtendedKeyUsageOID.CLIENT_AUTH])
    out.mkdir(parents=True, exist_ok=True)
    client = ClientFiles(out / f"{name}.pem", out / f"{name}.key", files.ca_cert)
    write_private(client.key, _key_pem(key))
    client.certificate.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + files.ca_cert.read_bytes()
    )
    return client


def server_certificate_usable(files: TlsFiles, now: dt.datetime | None = None) -> bool:
    """Whether ``server.pem`` exists, is signed by the current CA and is not about to end."""
    if not files.server.exists():
        return False
    try:
        cert = x509.load_pem_x509_certificate(files.server.read_bytes())
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return cert.not_valid_after_utc - (now or _now()) > RENEW_BEFORE


def ensure_certificates(folder: Path) -> TlsFiles:
    """The CA and server files under ``folder``, made where missing or due for renewal."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    files = TlsFiles.under(folder)
    if not (files.ca_cert.exists() and files.ca_key.exists()):
        _make_ca(files)
    if not server_certificate_usable(files):
        _make_server(files)
    return files


def local_server_files(home: Path, client_ca_file: Path, variable: str) -> TlsFiles:
    """The files of a local server whose clients trust ``client_ca_file``.

    That must be the project's CA under ``<home>/tls``: the server's certificate is signed by
    it, and clients trusting another CA would fail their handshake with a vaguer error.
    """
    files = ensure_certificates((home / "tls").resolve())
    if client_ca_file.resolve() != files.ca_cert:
        raise ConfigurationError(
            f"the local servers' certificate is signed by {files.ca_cert}; "
            f"set {variable} to it (now {client_ca_file})"
        )
    return files
