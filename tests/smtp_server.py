"""A real SMTP server on a free loopback port (aiosmtpd) that requires a login and keeps what
it receives, and the Airflow connection that reaches it (``AIRFLOW_CONN_<ID>``, JSON)."""

from __future__ import annotations

import email
import email.policy
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from tests.support import free_port

SENDER = "dslc@example.com"
LOGIN = "dslc-notify"


@dataclass
class Received:
    """One message as the server got it: the envelope, the login and the parsed e-mail."""

    mail_from: str
    rcpt_tos: list[str]
    login: str | None
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        """The HTML body, decoded."""
        part = self.message.get_body(preferencelist=("html", "plain"))
        assert part is not None, self.message
        return str(part.get_content())


@dataclass
class SmtpServer:
    """``with SmtpServer() as smtp``: listening on ``smtp.port``, login ``LOGIN`` with
    ``smtp.password``; ``smtp.received`` fills as messages arrive."""

    password: str = field(default_factory=lambda: f"smtp-{secrets.token_urlsafe(12)}")
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    refused_logins: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._controller: Any = None

    # aiosmtpd handler and authenticator
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        login = getattr(session, "auth_data", None)
        with self._lock:
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    getattr(login, "login", b"").decode() or None,
                    parsed,  # type: ignore[arg-type]
                )
            )
        return "250 OK"

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == LOGIN.encode()
            and auth_data.password == self.password.encode()
        )
        if not ok:
            self.refused_logins += 1
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def __enter__(self) -> SmtpServer:
        import logging

        from aiosmtpd.controller import Controller

        # aiosmtpd logs every SMTP command at INFO: the tests read the client's side.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            auth_required=True,
            # Loopback only, no certificate to present: plain AUTH is fine here.
            auth_require_tls=False,
        )
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def connection(self, password: str | None = None, port: int | None = None, **extra: Any) -> str:
        """The Airflow connection (JSON) that reaches this server (or, with ``port``, not)."""
        return json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port or self.port,
                "login": LOGIN,
                "password": self.password if password is None else password,
                "extra": {
                    "from_email": SENDER,
                    "disable_ssl": True,
                    "disable_tls": True,
                    "timeout": 10,
                    "retry_limit": 0,
                    **extra,
                },
            }
        )

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The messages, once at least ``count`` arrived (the server answers before it stores)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)
