"""The staff console (网页工作台, SPEC §11) and the offline API docs, served by the API's own app.

``install(app)`` adds the console's pages under ``/console``, the vendored static files under
``/static`` (htmx, Chart.js, Swagger UI: no asset from a CDN, see VENDORED.md) and ``/docs`` built on
the local Swagger UI files.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.console.insight import router as insight_router
from api.console.policy import router as policy_router
from api.console.routes import router
from api.console.wecom import router as wecom_router

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Mount the console, its static files and the offline /docs on the app."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Before the console's own routes: /console/login/wecom is not a sign-in link's code.
    app.include_router(wecom_router)
    app.include_router(router)
    app.include_router(insight_router)
    app.include_router(policy_router)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        """Swagger UI from the vendored swagger-ui-dist files (works offline)."""
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        """The address staff type: the console."""
        return RedirectResponse("/console", status_code=307)
