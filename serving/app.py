"""The FastAPI application: routers, security, limits, error mapping, model loading.

Run it with ``l2c serve`` (uvicorn). ``create_app`` takes its settings and model store
as arguments so tests can build an app around their own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter
from starlette.types import ASGIApp, Receive, Scope, Send

from features.errors import EventLogError
from models.targets import TARGETS
from serving.coalesce import PredictionCoalescer
from serving.deps import api_key_header, key_is_valid, require_api_key
from serving.errors import SECURED_ERRORS, ApiError, validation_detail
from serving.pages.views import mount_pages
from serving.routes import forecast, insight, models, predict
from serving.schemas import BatchRequest, ReadyResponse
from serving.scoring import predict_together
from serving.settings import Settings
from serving.store import ModelsNotLoadedError, ModelStore

logger = logging.getLogger(__name__)


class BodySizeLimit:
    """Refuse bodies over the limit (413) before reading them into memory.

    A body without a declared length (chunked) is counted as it is read; at the first
    byte over the limit the 413 is sent from here, and whatever the app then answers
    about its cut-off body is dropped: FastAPI turns any error raised while it reads a
    body into its own 400, which would otherwise reach the client instead.
    """

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
        started = answered = False

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if answered:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen, answered
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                if not started and not answered:
                    answered = True
                    await _too_large(send, self.max_bytes)
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if answered:  # the client has its 413; the app's reaction to the cut is moot
                return
            raise


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
    store = store or ModelStore.for_process(settings.process)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.load_models_on_startup:
            await run_in_threadpool(store.reload)
        watcher = (asyncio.create_task(_watch_champions(store, settings.watch_champions_seconds))
                   if settings.watch_champions_seconds > 0 else None)
        yield
        if watcher is not None:
            watcher.cancel()

    docs_open = settings.docs_open
    app = FastAPI(
        title="Lead-to-Cash predictions",
        description="Win probability, time to close and payment, payment delay, with SHAP "
                    "explanations; pipeline forecast. Send the key in the X-API-Key header.",
        version="0.1.0", lifespan=lifespan,
        # the default pages load Swagger UI and ReDoc from a CDN: ours serve shipped files
        docs_url=None, redoc_url=None, openapi_url=OPENAPI_URL if docs_open else None)
    app.state.settings = settings
    app.state.store = store
    app.state.coalescer = PredictionCoalescer(predict_together,
                                              max_cases=settings.coalesce_max_cases,
                                              enabled=settings.coalesce_predictions,
                                              gather_ms=settings.coalesce_gather_ms)
    secured = [Depends(require_api_key)]
    app.include_router(predict.router, dependencies=secured, responses=SECURED_ERRORS)
    app.include_router(forecast.router, dependencies=secured, responses=SECURED_ERRORS)
    app.include_router(models.router, dependencies=secured, responses=SECURED_ERRORS)
    app.include_router(insight.router, dependencies=secured, responses=SECURED_ERRORS)
    mount_pages(app)  # the cockpit at /: its own login (a session cookie), not the header

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """The process is up (no key needed)."""
        return {"status": "ok"}

    @app.get("/ready", tags=["health"], response_model=ReadyResponse,
             responses={503: {"model": ReadyResponse, "description": "no model is served"}})
    async def ready(key: Annotated[str | None, Security(api_key_header)] = None
                    ) -> JSONResponse:
        """Which models are served and which are missing (no key needed). With the key,
        also why a model failed to load and how predictions were batched: without it, no
        internals (error texts name files and hosts)."""
        snapshot = store.snapshot
        loaded = sorted(snapshot.models)
        missing = [target for target in TARGETS if target not in loaded]
        broken = sorted(snapshot.broken)
        working = bool(loaded) and not broken
        status = "not ready" if not working else "partial" if missing else "ready"
        body: dict[str, Any] = {"status": status, "loaded": loaded, "missing": missing,
                                "broken": broken}
        if key_is_valid(settings, key):
            body["errors"] = dict(snapshot.errors)
            body["predict_passes"] = asdict(app.state.coalescer.counts)
        return JSONResponse(status_code=200 if working else 503, content=body)

    if docs_open:
        _add_offline_docs(app)
    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": validation_detail(exc.errors())})

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": str(exc)})

    @app.exception_handler(ModelsNotLoadedError)
    async def _no_models(request: Request, exc: ModelsNotLoadedError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(EventLogError)
    async def _bad_events(request: Request, exc: EventLogError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app


OPENAPI_URL = "/openapi.json"
_DOCS_ASSETS = "/docs-assets"


def _add_offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc from files shipped in the fastapi-offline
    wheel (MIT; Swagger UI is Apache-2.0, ReDoc MIT): the pages work without the internet
    and load nothing from a third party."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(_DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI_URL}", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{_DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{_DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{_DOCS_ASSETS}/favicon.png",
            # the default validator badge asks a public server to check the spec
            swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{OPENAPI_URL}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{_DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{_DOCS_ASSETS}/favicon.png", with_google_fonts=False)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's spec, plus what it cannot see: the batch route reads its body itself (JSON
    or multipart), so ``BatchRequest`` and the models it uses are added to the components
    the route's request body refers to."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    batch = TypeAdapter(BatchRequest).json_schema(
        ref_template="#/components/schemas/{model}")
    for name, definition in batch.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components["BatchRequest"] = batch
    app.openapi_schema = schema
    return schema
