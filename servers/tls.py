"""Transport security for both listeners: TLS, mTLS, and certificates renewed without a restart.

With `--tls-cert`/`--tls-key` the gRPC and HTTP ports speak TLS only; with
`--client-ca` too, a client must present a certificate that CA signed (mTLS),
and on gRPC its identity (the certificate's common name, else its first subject
alternative name) reaches the policies as `peer_certificate`. The files are
watched: a renewed certificate (cert-manager, certbot, an operator's `cp`) serves
new connections within seconds, with no restart and no dropped call — gRPC asks
for the current files at each handshake, the HTTP listener's context is reloaded
in place.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

logger = logging.getLogger(__name__)

#: Seconds between two looks at the files (for the HTTP listener; gRPC looks per handshake,
#: but not more often than this).
RELOAD_CHECK_S = 2.0


@dataclass(frozen=True)
class CertificateFiles:
    """Where the listener's certificate, key and (for mTLS) client CA are.

    Attributes:
        certificate: PEM certificate chain, the server's first.
        key: PEM private key of that certificate.
        client_ca: PEM CA bundle client certificates must chain to (None: no mTLS).
    """

    certificate: Path
    key: Path
    client_ca: Path | None = None

    def stamp(self) -> tuple[float, ...]:
        """The files' modification times and sizes: a change means a renewal."""
        stamps: list[float] = []
        for path in (self.certificate, self.key, self.client_ca):
            if path is not None:
                status = path.stat()
                stamps += [status.st_mtime, float(status.st_size)]
        return tuple(stamps)

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """(certificate chain, key, client CA) as bytes.

        Raises:
            OSError: A file cannot be read.
        """
        return (
            self.certificate.read_bytes(),
            self.key.read_bytes(),
            self.client_ca.read_bytes() if self.client_ca is not None else None,
        )


class GrpcCertificates:
    """Server credentials for gRPC that follow the files (asked at each handshake).

    Args:
        files: The certificate files.
        clock: Monotonic seconds.
    """

    def __init__(
        self, files: CertificateFiles, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._files = files
        self._clock = clock
        self._stamp = files.stamp()
        self._checked = self._clock()
        self._initial = self._configuration()

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        chain, key, client_ca = self._files.read()
        return grpc.ssl_server_certificate_configuration(
            [(key, chain)], root_certificates=client_ca
        )

    def credentials(self) -> grpc.ServerCredentials:
        """The credentials to add the secure port with."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self._fetch,  # type: ignore[arg-type]  # grpc takes None as "keep the current"
            require_client_authentication=self._files.client_ca is not None,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed since last seen; None: keep the current."""
        now = self._clock()
        if now - self._checked < RELOAD_CHECK_S:
            return None
        self._checked = now
        try:
            stamp = self._files.stamp()
            if stamp == self._stamp:
                return None
            configuration = self._configuration()
        except OSError as error:  # mid-renewal (a file missing a moment): keep serving the old
            logger.warning("TLS files unreadable, keeping the current certificate: %s", error)
            return None
        self._stamp = stamp
        logger.warning("TLS certificate reloaded for gRPC from %s", self._files.certificate)
        return configuration


class HttpCertificates:
    """An SSLContext for the HTTP listener, reloaded in place when the files change.

    Args:
        files: The certificate files.
    """

    def __init__(self, files: CertificateFiles) -> None:
        self._files = files
        self._stamp = files.stamp()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load_into(self.context)
        if files.client_ca is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED

    def _load_into(self, context: ssl.SSLContext) -> None:
        context.load_cert_chain(self._files.certificate, self._files.key)
        if self._files.client_ca is not None:
            context.load_verify_locations(cafile=self._files.client_ca)

    def reload_if_changed(self) -> bool:
        """Load renewed files into the context (new connections use them); True if it did.

        The files are first loaded into a scratch context: a renewal caught halfway (the
        new certificate beside the old key) is refused there, and the live context keeps
        serving the old pair — loading into it directly would install the certificate
        before the key check fails.
        """
        try:
            stamp = self._files.stamp()
            if stamp == self._stamp:
                return False
            self._load_into(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))  # refused here if unfit
            self._load_into(self.context)
        except (OSError, ssl.SSLError) as error:
            logger.warning("TLS files unusable, keeping the current certificate: %s", error)
            return False
        self._stamp = stamp
        logger.warning("TLS certificate reloaded for HTTP from %s", self._files.certificate)
        return True
