"""Certificates and keys for the dev control plane, made with `cryptography`.

A real API server refuses to run without TLS and service-account keys, and the
controllers need a CA bundle to publish `kube-root-ca.crt`. Generating them in-process
avoids depending on openssl/cfssl, and doing it once per state directory keeps the
kubeconfig valid across `down`/`up`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .state import CLUSTER_DOMAIN, FIRST_SERVICE_IP

_VALIDITY = dt.timedelta(days=3650)
_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Pki:
    """File names of everything under `<state>/pki`."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.root / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.root / "apiserver.key"

    @property
    def admin_cert(self) -> Path:
        return self.root / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.root / "admin.key"

    @property
    def kubelet_cert(self) -> Path:
        return self.root / "kubelet.crt"

    @property
    def kubelet_key(self) -> Path:
        return self.root / "kubelet.key"

    @property
    def sa_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.root / "sa.pub"

    def complete(self) -> bool:
        return all(
            p.is_file()
            for p in (
                self.ca_cert,
                self.ca_key,
                self.apiserver_cert,
                self.apiserver_key,
                self.admin_cert,
                self.admin_key,
                self.kubelet_cert,
                self.kubelet_key,
                self.sa_key,
                self.sa_pub,
            )
        )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: _PrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    server: bool,
    client: bool,
    dns: list[str] | None = None,
    ips: list[str] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _has_ip(cert_file: Path, ip: str) -> bool:
    """Whether a certificate names `ip` among its subject alternative names."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return ipaddress.ip_address(ip) in sans.get_values_for_type(x509.IPAddress)


def ensure_pki(root: Path, node_name: str, node_ip: str) -> Pki:
    """Create whatever is missing under `root`; existing material is kept.

    The API server's and the kubelet's serving certificates name the node's address (pods
    reach the API server through it, the API server reaches the kubelet through it); when
    the machine's address changed since they were made, they are issued again.
    """
    pki = Pki(root)
    root.mkdir(parents=True, exist_ok=True)
    for cert_file, key_file in ((pki.apiserver_cert, pki.apiserver_key), (pki.kubelet_cert, pki.kubelet_key)):
        if cert_file.is_file() and not _has_ip(cert_file, node_ip):
            cert_file.unlink()
            key_file.unlink(missing_ok=True)
    if pki.complete():
        return pki

    if pki.ca_cert.is_file() and pki.ca_key.is_file():
        ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise RuntimeError(f"{pki.ca_key} is not an EC key; remove {root} to regenerate")
        ca_key = loaded
    else:
        ca_key = _new_key()
        now = dt.datetime.now(dt.UTC)
        subject = _name("mlkube-dev-ca")
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(pki.ca_key, ca_key)
        _write_cert(pki.ca_cert, ca_cert)

    if not (pki.apiserver_cert.is_file() and pki.apiserver_key.is_file()):
        key = _new_key()
        svc = "kubernetes.default.svc"
        cert = _issue(
            ca_cert,
            ca_key,
            _name("kube-apiserver"),
            key,
            server=True,
            client=False,
            dns=["localhost", "kubernetes", "kubernetes.default", svc, f"{svc}.{CLUSTER_DOMAIN}"],
            ips=["127.0.0.1", node_ip, FIRST_SERVICE_IP],
        )
        _write_key(pki.apiserver_key, key)
        _write_cert(pki.apiserver_cert, cert)

    if not (pki.admin_cert.is_file() and pki.admin_key.is_file()):
        key = _new_key()
        cert = _issue(
            ca_cert, ca_key, _name("mlkube-dev-admin", "system:masters"), key, server=False, client=True
        )
        _write_key(pki.admin_key, key)
        _write_cert(pki.admin_cert, cert)

    if not (pki.kubelet_cert.is_file() and pki.kubelet_key.is_file()):
        # The kubelet's identity towards the API server (Node authorizer) and its serving
        # certificate (logs, exec), which the API server verifies against the CA.
        key = _new_key()
        cert = _issue(
            ca_cert,
            ca_key,
            _name(f"system:node:{node_name}", "system:nodes"),
            key,
            server=True,
            client=True,
            dns=["localhost", node_name],
            ips=["127.0.0.1", node_ip],
        )
        _write_key(pki.kubelet_key, key)
        _write_cert(pki.kubelet_cert, cert)

    if not (pki.sa_key.is_file() and pki.sa_pub.is_file()):
        # RSA: RS256 is what every service-account token consumer expects.
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(pki.sa_key, sa)
        pki.sa_pub.write_bytes(
            sa.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return pki
