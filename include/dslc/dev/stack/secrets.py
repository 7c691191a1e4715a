"""The stack's secrets, generated once per state dir, kept readable by the owner only (0600)
and never printed: the JWT secret and API secret key shared by the Airflow components
(``<state>/secrets/airflow.json``), the serving admin token (``<state>/secrets/serving.json``)
and the Airflow admin password (SimpleAuthManager's password file), each unless set in
``DSLC_*``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from typing import TYPE_CHECKING

from dslc.dev.stack.errors import StackError
from dslc.dev.stack.paths import password_file
from dslc.settings import get_settings

if TYPE_CHECKING:
    from pathlib import Path

    from dslc.settings import Settings


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def airflow_secrets(settings: Settings) -> dict[str, str]:
    """The JWT secret and API secret key shared by all components, generated once per state."""
    path = settings.state_dir / "secrets" / "airflow.json"
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        if {"jwt_secret", "secret_key"} <= data.keys():
            return data
    data = {"jwt_secret": secrets.token_urlsafe(48), "secret_key": secrets.token_urlsafe(48)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    _write_private(path, json.dumps(data))
    return data


def serving_token(settings: Settings | None = None) -> str:
    """The serving admin token: DSLC_SERVING_ADMIN_TOKEN, else generated once per state dir."""
    settings = settings or get_settings()
    if settings.serving_admin_token is not None:
        return settings.serving_admin_token.get_secret_value()
    path = settings.state_dir / "secrets" / "serving.json"
    if path.exists():
        data: dict[str, str] = json.loads(path.read_text())
        if data.get("admin_token"):
            return data["admin_token"]
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    _write_private(path, json.dumps({"admin_token": token}))
    return token


def _read_passwords(settings: Settings) -> dict[str, str]:
    path = password_file(settings)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return {}
    if not text:
        return {}
    data: dict[str, str] = json.loads(text)
    return data


def seed_password(settings: Settings) -> None:
    """Make sure the password file has the admin user: DSLC_AIRFLOW_PASSWORD or a random one.

    SimpleAuthManager only adds users missing from the file, so a pre-seeded password is kept.
    """
    passwords = _read_passwords(settings)
    user = settings.airflow_username
    wanted = settings.airflow_password.get_secret_value() if settings.airflow_password else None
    if wanted is not None and passwords.get(user) != wanted:
        passwords[user] = wanted
    elif user not in passwords:
        passwords[user] = secrets.token_urlsafe(12)
    else:
        return
    _write_private(password_file(settings), json.dumps(passwords) + "\n")


def admin_password(settings: Settings | None = None) -> str:
    """The Airflow admin password: DSLC_AIRFLOW_PASSWORD, else the stack's generated file."""
    settings = settings or get_settings()
    if settings.airflow_password is not None:
        return settings.airflow_password.get_secret_value()
    password = _read_passwords(settings).get(settings.airflow_username)
    if password is None:
        raise StackError(
            f"No password for Airflow user {settings.airflow_username!r}: "
            f"{password_file(settings)} does not have it. Run `dslc up` (it generates one) "
            "or set DSLC_AIRFLOW_PASSWORD."
        )
    return password
