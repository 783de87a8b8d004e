"""The process page: the insight report (``insight.analyze``) of the served training
log, or of a log the user uploads, read as ``POST /v1/insight`` reads one."""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from insight import InsightError, analyze
from insight.report import render_html
from serving.errors import InsightRequestError
from serving.pages import data
from serving.pages.views import SHOWN, page, page_router, problem, served_snapshot
from serving.routes.insight import served_for_insight
from serving.routes.predict import read_uploaded_log
from serving.scoring import served_mapping
from serving.store import ModelsNotLoadedError, Snapshot

router = page_router()

By = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_]*$", max_length=60)]


@router.get("/process", response_class=HTMLResponse)
async def process_page(request: Request, by: By = None) -> HTMLResponse:
    if not served_snapshot(request).models:
        return problem(request, "process", ModelsNotLoadedError(
            "no model is served, so there is no training log to describe: upload a log "
            "below, or train and promote a model"))
    return page(request, "process.html", active="process", by=by or "", report=None,
                upload_name=None)


@router.get("/process/report", response_class=HTMLResponse)
async def process_report(request: Request, by: By = None) -> HTMLResponse:
    """The served training log's insight report (embedded by the process page)."""
    snapshot = served_snapshot(request)
    try:
        run_id = served_for_insight(snapshot).run_id
        html = await run_in_threadpool(data.kept, ("process", run_id, by or None),
                                       functools.partial(_report_of_served, snapshot, by))
    except SHOWN as exc:
        return problem(request, "process", exc, status_code=422
                       if not isinstance(exc, ModelsNotLoadedError) else 503)
    return HTMLResponse(html)


def _report_of_served(snapshot: Snapshot, by: str | None) -> str:

    log, source = data.served_log(snapshot)
    try:
        return render_html(analyze(log, by=by or None), title=f"Process insight: {source}")
    except InsightError as exc:
        raise InsightRequestError(str(exc)) from exc


@router.post("/process", response_class=HTMLResponse)
async def process_upload(request: Request, file: Annotated[UploadFile, File()],
                         by: Annotated[str, Form(pattern=r"^[A-Za-z0-9_]*$")] = ""
                         ) -> HTMLResponse:

    snapshot = served_snapshot(request)
    name = file.filename or "upload.csv"
    content = await file.read()

    def run() -> str:
        log = read_uploaded_log(name, content, served_mapping(snapshot))
        try:
            return render_html(analyze(log, by=by or None), title=f"Process insight: {name}")
        except InsightError as exc:
            raise InsightRequestError(str(exc)) from exc

    try:
        report = await run_in_threadpool(run)
    except SHOWN as exc:
        return problem(request, "process", exc, status_code=422)
    return page(request, "process.html", active="process", by=by, report=report,
                upload_name=name)
