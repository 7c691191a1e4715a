"""The stack's secrets, generated once per state dir, kept readable by the owner only (0600)
and never logged: the JWT secret and API secret key shared by the Airflow components
(``<state>/secrets/airflow.json``), the serving admin token (``<state>/secrets/serving.json``),
the MLflow admin password (``<state>/secrets/mlflow.json``, also written into MLflow's
basic-auth config ``<state>/mlflow/basic_auth.ini``) and the Airflow admin password
(SimpleAuthManager's password file), each unless set in ``DSLC_*``."""

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


def _generated(settings: Settings, name: str, key: str) -> str:
    """``key`` of ``<state>/secrets/<name>.json``, generated (and stored, 0600) the first time."""
    path = settings.state_dir / "secrets" / f"{name}.json"
    data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if data.get(key):
        return data[key]
    data[key] = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    _write_private(path, json.dumps(data))
    return data[key]


def serving_token(settings: Settings | None = None) -> str:
    """The serving admin token: DSLC_SERVING_ADMIN_TOKEN, else generated once per state dir."""
    settings = settings or get_settings()
    if settings.serving_admin_token is not None:
        return settings.serving_admin_token.get_secret_value()
    return _generated(settings, "serving", "admin_token")


def mlflow_credentials(settings: Settings | None = None) -> tuple[str, str]:
    """MLflow's basic-auth user and password: DSLC_MLFLOW_USERNAME / DSLC_MLFLOW_PASSWORD, else
    ``admin`` and a password generated once per state dir."""
    settings = settings or get_settings()
    if settings.mlflow_password is not None:
        password = settings.mlflow_password.get_secret_value()
    else:
        password = _generated(settings, "mlflow", "password")
    return settings.mlflow_username, password


def mlflow_flask_secret(settings: Settings) -> str:
    """The key MLflow's auth app signs its CSRF tokens with, generated once per state dir."""
    return _generated(settings, "mlflow", "flask_secret_key")


def mlflow_auth_config(settings: Settings | None = None) -> Path:
    """Write MLflow's basic-auth config for this stack (``<state>/mlflow/basic_auth.ini``)."""
    from dslc.dev.stack.distributed import load_profile

    settings = settings or get_settings()
    username, password = mlflow_credentials(settings)
    profile = load_profile(settings)
    users = None if profile is None else profile.database_url(profile.mlflow_auth_db)
    return write_mlflow_auth_config(settings.state_dir / "mlflow", username, password, users)


def write_mlflow_auth_config(
    root: Path, username: str, password: str, database_uri: str | None = None
) -> Path:
    """Write ``<root>/basic_auth.ini`` (0600), the config MLflow's ``basic-auth`` app reads from
    MLFLOW_AUTH_CONFIG_PATH: its user DB ``<root>/basic_auth.db`` and the admin it creates there
    on first start (``database_uri`` puts that DB elsewhere). MLflow reads the admin password
    only then: changing it later is done
    through MLflow's update-password API, not here."""
    check_mlflow_password(password)
    if not username.strip() or any(c in username for c in "\r\n:"):
        raise StackError(f"DSLC_MLFLOW_USERNAME={username!r} is not a valid MLflow user name.")
    lines = [
        "[mlflow]",
        # Authenticated users other than the admin may read; anonymous requests get a 401.
        "default_permission = READ",
        f"database_uri = {database_uri or 'sqlite:///' + str(root / 'basic_auth.db')}",
        f"admin_username = {username}",
        # configparser interpolates %: escape it so the password is read back verbatim.
        f"admin_password = {password.replace('%', '%%')}",
        f"authorization_function = {MLFLOW_AUTH_FUNCTION}",
        # Each request's password check is a deliberately slow hash (tens of ms): without the
        # cache a drift report's handful of MLflow calls took ~3 s more. A good login is
        # remembered for a minute (one server worker, so a password change through MLflow's
        # API applies at once; one made out of band within the TTL).
        f"auth_cache_ttl_seconds = {MLFLOW_AUTH_CACHE_SECONDS}",
        "",
    ]
    path = root / "basic_auth.ini"
    _write_private(path, "\n".join(lines))
    return path


MLFLOW_AUTH_FUNCTION = "mlflow.server.auth:authenticate_request_basic_auth"
MLFLOW_AUTH_CACHE_SECONDS = 60
# The admin password older MLflow versions shipped in basic_auth.ini: public, never ours.
MLFLOW_DEFAULT_PASSWORD = "password1234"  # noqa: S105 - the value we refuse
MLFLOW_MIN_PASSWORD = 12


def check_mlflow_password(password: str) -> None:
    """Refuse a password MLflow would refuse (or read back differently) before it starts."""
    if password == MLFLOW_DEFAULT_PASSWORD:
        raise StackError(
            "DSLC_MLFLOW_PASSWORD is MLflow's public default password: set another one "
            "(or unset it and the stack generates one)."
        )
    if len(password) < MLFLOW_MIN_PASSWORD:
        raise StackError(
            f"DSLC_MLFLOW_PASSWORD has {len(password)} characters; MLflow needs at least "
            f"{MLFLOW_MIN_PASSWORD}: set a longer one (or unset it and the stack generates one)."
        )
    if password != password.strip() or "\n" in password or "\r" in password:
        raise StackError(
            "DSLC_MLFLOW_PASSWORD starts or ends with whitespace or has a line break, which "
            "MLflow's config file cannot hold: set one without."
        )


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
