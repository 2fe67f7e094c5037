"""FastAPI app factory. PLACEHOLDER: the API issue builds the routes."""

from __future__ import annotations

from fastapi import FastAPI

from config import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; Temporal client and pool are created once in the lifespan."""
    settings = settings or get_settings()
    app = FastAPI(title="Client intake")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        """Readiness (placeholder)."""
        return {"status": "ok"}

    return app
