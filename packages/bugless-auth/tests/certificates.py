"""Per-run certificates from trustme, as DER, for the tls backend's tests."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


def der_of(leaf: trustme.LeafCert) -> bytes:
    pem = leaf.cert_chain_pems[0].bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


@dataclass(frozen=True)
class Pki:
    """Our client CA, a foreign CA, and a mapping file naming some subjects."""

    ca: trustme.CA
    foreign: trustme.CA
    ca_file: Path
    mapping_file: Path

    def client(
        self,
        common_name: str,
        *emails: str,
        ca: trustme.CA | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> bytes:
        """A client certificate's DER (valid from now, for trustme's default span, unless given)."""
        issuer = ca or self.ca
        leaf = issuer.issue_cert(
            *emails or ("client.invalid",),
            common_name=common_name,
            not_before=not_before,
            not_after=not_after,
        )
        return der_of(leaf)


MAPPING = {
    "deploy-bot": {"username": "deploy-bot", "groups": ["bots", "deployers"]},
    "alice@example.com": {"username": "alice-cert", "display_name": "Alice", "bot": False},
}


def make_pki(root: Path) -> Pki:
    ca, foreign = trustme.CA(), trustme.CA()
    ca_file = root / "client-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    mapping_file = root / "certificates.json"
    mapping_file.write_text(json.dumps(MAPPING))
    return Pki(ca, foreign, ca_file, mapping_file)
