"""The lake's reports served inside Airflow, behind Airflow's own authentication.

The api-server mounts plugin apps without any auth of their own, so every route here takes
Airflow's security dependencies: ``get_user`` (the UI's ``_token`` cookie or an
``Authorization: Bearer`` JWT; none -> 401) and ``requires_access_dag`` for the DAG whose runs
wrote the report (no read access -> 403). Which keys are reports is decided by
:mod:`dslc.reports` (anything else -> 404).

Built on first request (:class:`LazyApp`): the plugin module is imported by every Airflow
process, tasks included, and only the api-server needs FastAPI and the security module.
"""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations (the
# security dependency among them) at definition, where only this function's imports see them.
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

# Lake HTML runs in a sandbox: no script, no same-origin access to Airflow's API, nothing
# fetched but inline styles and data: images (the drift report is self-contained; GX Data
# Docs lose their CDN styling but keep their content).
SANDBOX = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "font-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


def create_app() -> "FastAPI":
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
    from fastapi import FastAPI, HTTPException, Request, Response

    from dslc import reports

    app = FastAPI(title="dslc", description="The ML lifecycle's lake reports, inside Airflow")

    @app.get("/reports/{key:path}")
    def report(key: str, request: Request, user: GetUserDep) -> Response:
        """A drift report or validation result from the lake (read access to its DAG)."""
        from dslc_airflow.lake import lake

        try:
            found = reports.parse(key)
        except reports.ReportPathError as e:
            raise HTTPException(404, str(e)) from None
        # Airflow's own check, for the DAG named by the key rather than by a path parameter.
        requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=found.dag_id)(request, user)
        try:
            body = reports.read(lake(), found)
        except reports.ReportPathError as e:
            raise HTTPException(404, str(e)) from None
        except FileNotFoundError:
            raise HTTPException(
                404, f"no {found.key} in the lake yet: has its {found.dag_id} run written it?"
            ) from None
        return Response(
            body,
            media_type=found.media_type,
            headers={
                "Content-Security-Policy": SANDBOX,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "private, no-store",
            },
        )

    return app


class LazyApp:
    """An ASGI app that builds :func:`create_app` on its first request."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)
