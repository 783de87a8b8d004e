"""The cockpit: pages for sales managers, reps and data scientists at ``/``.

This module holds what every page shares: the templates, the access check, the page and
problem answers, login and logout, the assets, and ``mount_pages``. Each kind of page has
its own module of views over the API's own services (``serving.pages.data``):
``pipeline``, ``deals``, ``process`` and ``models``; templates only format. Every number
is also in the API's JSON, unrounded; a page rounds for people.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from features.errors import EventLogError
from serving.caveats import Caveat, served_caveats
from serving.deps import key_is_valid
from serving.errors import ApiError
from serving.pages import auth, data
from serving.pages.fmt import FILTERS
from serving.settings import Settings
from serving.store import ModelsNotLoadedError, Snapshot

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(FILTERS)

#: what a page catches and shows as a message instead of an error answer
SHOWN = (ModelsNotLoadedError, ApiError, EventLogError, data.NoDealError)


async def require_page_access(request: Request) -> None:
    """Pages need the session cookie in production; in development they are open."""
    settings: Settings = request.app.state.settings
    if request.method == "POST" and not auth.same_origin(request):
        raise HTTPException(403, detail="a form of another site cannot act on this one")
    if auth.is_open(settings) or auth.has_session(request, settings):
        return
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise auth.LoginRequired(wanted)


def page_router() -> APIRouter:
    """A router for a kind of page: behind the access check, and out of the API's schema."""
    return APIRouter(include_in_schema=False, dependencies=[Depends(require_page_access)])


#: login, logout and assets: open to all, since they are how one gets in
router = APIRouter(include_in_schema=False)


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    return templates.TemplateResponse(request, name, {
        "open_mode": auth.is_open(settings), "active": context.pop("active", ""),
        "caveats": [], **context}, status_code=status_code)


def caveats(request: Request, targets: tuple[str, ...] | None = None) -> list[Caveat]:
    """What the pages that show the served models' numbers say above them (low data, a
    baseline shipped): the words of ``GET /v1/models`` and the predictions' notes; only
    of the ``targets`` whose numbers the page shows, when given."""
    return [c for c in served_caveats(served_snapshot(request))
            if targets is None or c.target in targets]


def problem(request: Request, active: str, exc: Exception, status_code: int = 503
            ) -> HTMLResponse:
    """A page that cannot show its numbers says why and what to do, never a blank or a 500."""
    return page(request, "problem.html", status_code=status_code, active=active,
                message=str(exc), missing_models=isinstance(exc, ModelsNotLoadedError))


def served_snapshot(request: Request) -> Snapshot:
    return request.app.state.store.snapshot


# ------------------------------------------------------------------ login


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return page(request, "login.html", next=auth.safe_next(next), error=None)


@router.post("/login")
async def login(request: Request, key: Annotated[str, Form()] = "",
                next: Annotated[str, Form()] = "/") -> Response:
    settings: Settings = request.app.state.settings
    if not key_is_valid(settings, key):
        return page(request, "login.html", status_code=401, next=auth.safe_next(next),
                    error="That is not the API key of this server (L2C_API_KEY).")
    response = RedirectResponse(auth.safe_next(next), status_code=303)
    response.set_cookie(auth.COOKIE, auth.session_token(settings),
                        max_age=auth.MAX_AGE_SECONDS, httponly=True, samesite="strict",
                        secure=auth.cookie_is_secure(request, settings), path="/")
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/")
    return response


# ------------------------------------------------------------------ assets and wiring


@functools.cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


@router.get("/static/plotly.min.js")
async def plotly_js() -> Response:
    """plotly.js from the plotly wheel (MIT): charts need no CDN."""
    return Response(await run_in_threadpool(_plotly_js), media_type="text/javascript",
                    headers={"Cache-Control": "public, max-age=86400"})


def mount_pages(app: FastAPI) -> None:
    """The cockpit on ``app``: its pages, login, and assets shipped in this package."""
    # imported here, not at the top: each kind of page imports this module's helpers
    from serving.pages import deals, models, pipeline, process

    app.include_router(router)
    for kind in (pipeline, deals, process, models):
        app.include_router(kind.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="cockpit-static")

    @app.exception_handler(auth.LoginRequired)
    async def _to_login(request: Request, exc: auth.LoginRequired) -> Response:
        from urllib.parse import quote

        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='')}",
                                status_code=303)
