"""The FastAPI application: routers, security, limits, error mapping, model loading.

Run it with ``l2c serve`` (uvicorn). ``create_app`` takes its settings and model store
as arguments so tests can build an app around their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from features.errors import EventLogError, FeatureSchemaError
from serving.coalesce import PredictionCoalescer
from serving.deps import require_api_key
from serving.routes import forecast, models, predict
from serving.service import predict_together
from serving.settings import Settings
from serving.store import ModelsNotLoadedError, ModelStore

logger = logging.getLogger(__name__)


class BodySizeLimit:
    """Refuse bodies over the limit (413) before reading them into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            await _too_large(send, self.max_bytes)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    response = JSONResponse(status_code=413,
                            content={"detail": f"request body over the limit of {limit} bytes"})
    await response({"type": "http"}, None, send)  # type: ignore[arg-type]


async def _watch_champions(store: ModelStore, every_seconds: float) -> None:
    """Switch to newly promoted champions within ``every_seconds``.

    Each ``l2c serve --workers N`` process has its own models, and ``POST
    /v1/models/reload`` reaches one of them; asking the registry now and then brings
    every worker to the same champions (and picks up ``l2c promote`` by itself).
    """
    while True:
        await asyncio.sleep(every_seconds)
        try:
            report = await run_in_threadpool(store.reload_if_promoted)
        except Exception as exc:  # the registry unreachable: keep serving, try again
            logger.warning("could not ask the registry for champions: %s", exc)
            continue
        if report is not None:
            logger.warning("champions changed in the registry; reloaded: %s", report)


def create_app(settings: Settings | None = None, store: ModelStore | None = None) -> FastAPI:
    settings = settings or Settings()
    store = store or ModelStore()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.load_models_on_startup:
            await run_in_threadpool(store.reload)
        watcher = (asyncio.create_task(_watch_champions(store, settings.watch_champions_seconds))
                   if settings.watch_champions_seconds > 0 else None)
        yield
        if watcher is not None:
            watcher.cancel()

    app = FastAPI(
        title="Lead-to-Cash predictions",
        description="Win probability, time to close and payment, payment delay, with SHAP "
                    "explanations; pipeline forecast. Send the key in the X-API-Key header.",
        version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.coalescer = PredictionCoalescer(predict_together,
                                              max_cases=settings.coalesce_max_cases,
                                              enabled=settings.coalesce_predictions,
                                              gather_ms=settings.coalesce_gather_ms)
    secured = [Depends(require_api_key)]
    app.include_router(predict.router, dependencies=secured)
    app.include_router(forecast.router, dependencies=secured)
    app.include_router(models.router, dependencies=secured)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """The process is up (no key needed)."""
        return {"status": "ok"}

    @app.get("/ready", tags=["health"])
    async def ready() -> JSONResponse:
        """Models are loaded and requests can be scored (no key needed)."""
        loaded = sorted(store.snapshot.models)
        if not loaded:
            return JSONResponse(status_code=503, content={
                "status": "not ready", "loaded": loaded, "errors": store.last_errors})
        return JSONResponse(content={"status": "ready", "loaded": loaded,
                                     "errors": store.last_errors,
                                     "predict_passes": asdict(app.state.coalescer.counts)})

    @app.exception_handler(ModelsNotLoadedError)
    async def _no_models(request: Request, exc: ModelsNotLoadedError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(EventLogError)
    async def _bad_events(request: Request, exc: EventLogError) -> JSONResponse:
        code = 500 if isinstance(exc, FeatureSchemaError) and "pipeline" in str(exc) else 422
        return JSONResponse(status_code=code, content={"detail": str(exc)})

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
