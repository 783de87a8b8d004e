"""The models page: each target's champion and recent versions with their figures and
plots, and promotion by the gate of ``l2c promote`` (data from ``serving.pages.registry``)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from serving.pages import registry
from serving.pages.views import page, page_router

router = page_router()

_PLOT = re.compile(r"^[a-z_]+\.png$")
_RUN = re.compile(r"^[0-9a-f]{32}$")


@router.get("/models", response_class=HTMLResponse)
async def models_view(request: Request, message: str | None = None,
                      refused: str | None = None) -> HTMLResponse:
    overview = await run_in_threadpool(registry.overview, _process(request))
    return page(request, "models.html", active="models", overview=overview,
                message=message, refused=refused)


@router.post("/models/promote", response_class=HTMLResponse)
async def models_promote(request: Request, target: Annotated[str, Form()],
                         version: Annotated[int, Form()]) -> HTMLResponse:
    process = _process(request)
    outcome = await run_in_threadpool(registry.promote_version, target, version, process)
    overview = await run_in_threadpool(registry.overview, process)
    if outcome["promoted"]:
        await run_in_threadpool(request.app.state.store.reload_if_promoted)
    return page(request, "models.html", active="models", overview=overview,
                message=outcome["message"] if outcome["promoted"] else None,
                refused=None if outcome["promoted"] else outcome["message"],
                status_code=200)  # a refusal is an answer shown on the page


def _process(request: Request) -> str | None:
    """The process whose models the app serves (``L2C_PROCESS``): the page shows and
    promotes those, not the default names."""
    return request.app.state.settings.process


@router.get("/models/plots/{run_id}/{name}")
async def model_plot(run_id: str, name: str) -> Response:
    if not _RUN.match(run_id) or not _PLOT.match(name):
        return Response("no such plot", status_code=404, media_type="text/plain")
    content = await run_in_threadpool(registry.plot_bytes, run_id, name)
    if content is None:
        return Response("no such plot", status_code=404, media_type="text/plain")
    return Response(content, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})
