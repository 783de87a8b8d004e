"""The cockpit: pages for sales managers, reps and data scientists at ``/``.

One view per page, over the API's own services (``serving.pages.data``); templates only
format. Every number is also in the API's JSON, unrounded; a page rounds for people.
"""

from __future__ import annotations

import functools
import io
import re
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from features.errors import EventLogError
from features.io import neutralise_formulas
from insight import InsightError, analyze
from insight.report import render_html
from serving.deps import key_is_valid
from serving.errors import ApiError, InsightRequestError
from serving.pages import auth, data, models_page
from serving.pages.fmt import FILTERS
from serving.routes.insight import served_for_insight
from serving.routes.predict import read_uploaded_log
from serving.schemas import PredictRequest
from serving.settings import Settings
from serving.store import ModelsNotLoadedError, Snapshot
from serving.threads import in_scoring_thread

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(FILTERS)

#: what a page catches and shows as a message instead of an error answer
_SHOWN = (ModelsNotLoadedError, ApiError, EventLogError, data.NoDealError)


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def require_page_access(request: Request) -> None:
    """Pages need the session cookie in production; in development they are open."""
    settings: Settings = request.app.state.settings
    if request.method == "POST" and not auth.same_origin(request):
        raise HTTPException(403, detail="a form of another site cannot act on this one")
    if auth.is_open(settings) or auth.has_session(request, settings):
        return
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise auth.LoginRequired(wanted)


router = APIRouter(include_in_schema=False)
pages = APIRouter(include_in_schema=False, dependencies=[Depends(require_page_access)])


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    return templates.TemplateResponse(request, name, {
        "open_mode": auth.is_open(settings), "active": context.pop("active", ""),
        **context}, status_code=status_code)


def _problem(request: Request, active: str, exc: Exception, status_code: int = 503
             ) -> HTMLResponse:
    """A page that cannot show its numbers says why and what to do, never a blank or a 500."""
    return _page(request, "problem.html", status_code=status_code, active=active,
                 message=str(exc), missing_models=isinstance(exc, ModelsNotLoadedError))


def _snapshot(request: Request) -> Snapshot:
    return request.app.state.store.snapshot


# ------------------------------------------------------------------ login


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return _page(request, "login.html", next=auth.safe_next(next), error=None)


@router.post("/login")
async def login(request: Request, key: Annotated[str, Form()] = "",
                next: Annotated[str, Form()] = "/") -> Response:
    settings: Settings = request.app.state.settings
    if not key_is_valid(settings, key):
        return _page(request, "login.html", status_code=401, next=auth.safe_next(next),
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


# ------------------------------------------------------------------ pipeline

GroupBy = Annotated[str | None, Query(pattern="^(region|rep|lead_source|product)?$")]


def _pipeline(snapshot: Snapshot, settings: Settings, currency: str | None,
              group_by: str | None) -> dict[str, Any]:
    log, _ = data.served_log(snapshot)
    listed = data.currencies(log)
    if currency not in listed:
        currency = listed[0] if listed else None
    result = data.pipeline_forecast(snapshot, currency, group_by, settings.forecast_months,
                                    settings.forecast_simulations)
    return {"forecast": result, "currency": currency, "currencies": listed}


@pages.get("/", response_class=HTMLResponse)
async def pipeline_page(request: Request, currency: str | None = None,
                        group_by: GroupBy = None) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    group_by = group_by or None
    try:
        shown = await in_scoring_thread(_pipeline, _snapshot(request), settings, currency,
                                        group_by)
    except _SHOWN as exc:
        return _problem(request, "pipeline", exc)
    result = shown["forecast"]
    key = ("chart", data.served_key(_snapshot(request)), shown["currency"], group_by,
           result["as_of"], result["simulations"], len(result["months"]))
    chart = await run_in_threadpool(data.kept, key, functools.partial(
        _forecast_chart, result, shown["currency"]))
    return _page(request, "pipeline.html", active="pipeline", group_by=group_by,
                 groups=data.GROUPS, chart=chart, **shown)


@pages.get("/pipeline.csv")
async def pipeline_csv(request: Request, currency: str | None = None,
                       group_by: GroupBy = None) -> Response:
    settings: Settings = request.app.state.settings
    try:
        shown = await in_scoring_thread(_pipeline, _snapshot(request), settings, currency,
                                        group_by or None)
    except _SHOWN as exc:
        return _problem(request, "pipeline", exc)
    result, cur = shown["forecast"], shown["currency"]
    rows = [{"part": "month", "name": m["month"], "currency": cur,
             **{f"{kind}_{k}": m[kind][k] for kind in ("bookings", "cash_in")
                for k in ("expected", "p10", "p50", "p90")}} for m in result["months"]]
    rows += [{"part": f"group by {result['group_by']}", "name": g["group"], "currency": cur,
              **{f"{kind}_{k}": g[kind][k] for kind in ("bookings", "cash_in")
                 for k in ("expected", "p10", "p50", "p90")}} for g in result["groups"]]
    frame = neutralise_formulas(pd.DataFrame(rows))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return Response(buffer.getvalue(), media_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="pipeline-forecast.csv"'})


def _forecast_chart(result: dict[str, Any], currency: str | None) -> str:
    """Bookings and cash-in per month, expected with the P10–P90 band (plotly; its JS is
    served by this app)."""
    import plotly.graph_objects as go

    from serving.pages.fmt import month

    months = [month(m["month"]) for m in result["months"]]
    fig = go.Figure()
    for kind, label, colour in (("bookings", "Bookings", "31,119,180"),
                                ("cash_in", "Cash-in", "44,160,44")):
        low = [m[kind]["p10"] for m in result["months"]]
        high = [m[kind]["p90"] for m in result["months"]]
        fig.add_trace(go.Scatter(x=months + months[::-1], y=high + low[::-1], fill="toself",
                                 mode="lines", fillcolor=f"rgba({colour},0.15)", line={"width": 0},
                                 hoverinfo="skip", name=f"{label} P10–P90"))
        fig.add_trace(go.Scatter(x=months, y=[m[kind]["expected"] for m in result["months"]],
                                 mode="lines+markers", line={"color": f"rgb({colour})"},
                                 name=f"{label} expected",
                                 hovertemplate="%{x}: %{y:,.0f}<extra></extra>"))
    fig.update_layout(height=360, margin={"l": 60, "r": 20, "t": 20, "b": 40},
                      yaxis_title=currency or "amount", legend={"orientation": "h"},
                      template="plotly_white")
    # the figure as JSON, drawn by cockpit.js once the deferred plotly.js is parsed: the
    # page's text paints first; "</" is escaped so the JSON cannot end its script element
    return fig.to_json().replace("</", "<\\/")


# ------------------------------------------------------------------ deals


@pages.get("/deals", response_class=HTMLResponse)
async def deals_page(request: Request, rep: str | None = None, region: str | None = None,
                     account: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> HTMLResponse:
    try:
        deals = await in_scoring_thread(data.open_deals, _snapshot(request))
    except _SHOWN as exc:
        return _problem(request, "deals", exc)
    table = deals.table
    options = {c: sorted(table[c].dropna().astype(str).unique().tolist())
               for c in ("rep", "region") if c in table.columns}
    chosen = {"rep": rep or None, "region": region or None, "account": account or None}
    shown = table
    for column, value in chosen.items():
        if value and column in shown.columns:
            shown = shown[shown[column].astype(str).str.casefold() == value.casefold()]
    return _page(request, "deals.html", active="deals", deals=shown.head(limit).to_dict(
        "records"), total=len(shown), limit=limit, options=options, chosen=chosen,
        as_of=deals.as_of)


def _whatif_from_query(discount: str | None, terms: str | None, step: str | None
                       ) -> data.WhatIf:
    value = None
    if discount not in (None, ""):
        try:
            value = float(discount)
        except ValueError:
            value = None
    return data.WhatIf(discount_pct=value, payment_terms=terms or None, next_step=step or None)


async def _deal_context(request: Request, case_id: str, change: data.WhatIf
                        ) -> dict[str, Any]:
    snapshot = _snapshot(request)
    body: PredictRequest = await run_in_threadpool(data.deal_request, snapshot, case_id)
    coalescer = request.app.state.coalescer
    prediction = await coalescer.predict(snapshot, body)
    context: dict[str, Any] = {"case_id": case_id, "p": prediction, "change": change,
                               "alt": None, "attributes": {
                                   k: v for k, v in body.attributes.items() if v is not None}}
    if change.changes():
        changed = data.what_if_request(body, change)
        context["alt"] = await coalescer.predict(snapshot, changed)
    return context


@pages.get("/deals/{case_id}", response_class=HTMLResponse)
async def deal_page(request: Request, case_id: str, discount: str | None = None,
                    terms: str | None = None, step: str | None = None) -> HTMLResponse:
    snapshot = _snapshot(request)
    try:
        context = await _deal_context(request, case_id,
                                      _whatif_from_query(discount, terms, step))
        events = await run_in_threadpool(data.timeline, snapshot, case_id)
        choices = await run_in_threadpool(data.what_if_choices, snapshot)
        reliable = await run_in_threadpool(data.reliability, snapshot,
                                           context["p"]["events_used"])
    except data.NoDealError as exc:
        return _problem(request, "deals", exc, status_code=404)
    except _SHOWN as exc:
        return _problem(request, "deals", exc)
    return _page(request, "deal.html", active="deals", events=events.to_dict("records"),
                 choices=choices, reliable=reliable, **context)


@pages.get("/deals/{case_id}/whatif", response_class=HTMLResponse)
async def deal_whatif(request: Request, case_id: str, discount: str | None = None,
                      terms: str | None = None, step: str | None = None) -> HTMLResponse:
    """The what-if result alone: the deal page's script swaps it in as the form changes."""
    try:
        context = await _deal_context(request, case_id,
                                      _whatif_from_query(discount, terms, step))
    except data.NoDealError as exc:
        return _problem(request, "deals", exc, status_code=404)
    except _SHOWN as exc:
        return _problem(request, "deals", exc)
    return _page(request, "whatif.html", **context)


# ------------------------------------------------------------------ process

By = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_]*$", max_length=60)]


@pages.get("/process", response_class=HTMLResponse)
async def process_page(request: Request, by: By = None) -> HTMLResponse:
    if not _snapshot(request).models:
        return _problem(request, "process", ModelsNotLoadedError(
            "no model is served, so there is no training log to describe: upload a log "
            "below, or train and promote a model"))
    return _page(request, "process.html", active="process", by=by or "", report=None,
                 upload_name=None)


@pages.get("/process/report", response_class=HTMLResponse)
async def process_report(request: Request, by: By = None) -> HTMLResponse:
    """The served training log's insight report (embedded by the process page)."""
    snapshot = _snapshot(request)
    try:
        run_id = served_for_insight(snapshot).run_id
        html = await run_in_threadpool(data.kept, ("process", run_id, by or None),
                                       functools.partial(_report_of_served, snapshot, by))
    except _SHOWN as exc:
        return _problem(request, "process", exc, status_code=422
                        if not isinstance(exc, ModelsNotLoadedError) else 503)
    return HTMLResponse(html)


def _report_of_served(snapshot: Snapshot, by: str | None) -> str:

    log, source = data.served_log(snapshot)
    try:
        return render_html(analyze(log, by=by or None), title=f"Process insight: {source}")
    except InsightError as exc:
        raise InsightRequestError(str(exc)) from exc


@pages.post("/process", response_class=HTMLResponse)
async def process_upload(request: Request, file: Annotated[UploadFile, File()],
                         by: Annotated[str, Form(pattern=r"^[A-Za-z0-9_]*$")] = ""
                         ) -> HTMLResponse:

    snapshot = _snapshot(request)
    name = file.filename or "upload.csv"
    content = await file.read()

    def run() -> str:
        log = read_uploaded_log(name, content, snapshot)
        try:
            return render_html(analyze(log, by=by or None), title=f"Process insight: {name}")
        except InsightError as exc:
            raise InsightRequestError(str(exc)) from exc

    try:
        report = await run_in_threadpool(run)
    except _SHOWN as exc:
        return _problem(request, "process", exc, status_code=422)
    return _page(request, "process.html", active="process", by=by, report=report,
                 upload_name=name)


# ------------------------------------------------------------------ models

_PLOT = re.compile(r"^[a-z_]+\.png$")
_RUN = re.compile(r"^[0-9a-f]{32}$")


@pages.get("/models", response_class=HTMLResponse)
async def models_view(request: Request, message: str | None = None,
                      refused: str | None = None) -> HTMLResponse:
    overview = await run_in_threadpool(models_page.overview)
    return _page(request, "models.html", active="models", overview=overview,
                 message=message, refused=refused)


@pages.post("/models/promote", response_class=HTMLResponse)
async def models_promote(request: Request, target: Annotated[str, Form()],
                         version: Annotated[int, Form()]) -> HTMLResponse:
    outcome = await run_in_threadpool(models_page.promote_version, target, version)
    overview = await run_in_threadpool(models_page.overview)
    if outcome["promoted"]:
        await run_in_threadpool(request.app.state.store.reload_if_promoted)
    return _page(request, "models.html", active="models", overview=overview,
                 message=outcome["message"] if outcome["promoted"] else None,
                 refused=None if outcome["promoted"] else outcome["message"],
                 status_code=200)  # a refusal is an answer shown on the page


@pages.get("/models/plots/{run_id}/{name}")
async def model_plot(run_id: str, name: str) -> Response:
    if not _RUN.match(run_id) or not _PLOT.match(name):
        return Response("no such plot", status_code=404, media_type="text/plain")
    content = await run_in_threadpool(models_page.plot_bytes, run_id, name)
    if content is None:
        return Response("no such plot", status_code=404, media_type="text/plain")
    return Response(content, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600"})


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
    app.include_router(router)
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="cockpit-static")

    @app.exception_handler(auth.LoginRequired)
    async def _to_login(request: Request, exc: auth.LoginRequired) -> Response:
        from urllib.parse import quote

        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='')}",
                                status_code=303)
