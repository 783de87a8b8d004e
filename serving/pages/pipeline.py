"""The pipeline page: bookings and cash-in forecast per month and per group, its chart,
and the same figures as CSV (``serving.forecast.forecast``, as ``GET /v1/forecast``)."""

from __future__ import annotations

import functools
import io
from typing import Annotated, Any

import pandas as pd
from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from features.io import neutralise_formulas
from serving.forecast import FORECAST_TARGETS
from serving.pages import data
from serving.pages.views import SHOWN, caveats, page, page_router, problem, served_snapshot
from serving.settings import Settings
from serving.store import Snapshot
from serving.threads import in_scoring_thread

router = page_router()

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


@router.get("/", response_class=HTMLResponse)
async def pipeline_page(request: Request, currency: str | None = None,
                        group_by: GroupBy = None) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    group_by = group_by or None
    try:
        shown = await in_scoring_thread(_pipeline, served_snapshot(request), settings,
                                        currency, group_by)
    except SHOWN as exc:
        return problem(request, "pipeline", exc)
    result = shown["forecast"]
    key = ("chart", data.served_key(served_snapshot(request)), shown["currency"], group_by,
           result["as_of"], result["simulations"], len(result["months"]))
    chart = await run_in_threadpool(data.kept, key, functools.partial(
        _forecast_chart, result, shown["currency"]))
    return page(request, "pipeline.html", active="pipeline", group_by=group_by,
                groups=data.GROUPS, chart=chart, caveats=caveats(request, FORECAST_TARGETS),
                **shown)


@router.get("/pipeline.csv")
async def pipeline_csv(request: Request, currency: str | None = None,
                       group_by: GroupBy = None) -> Response:
    settings: Settings = request.app.state.settings
    try:
        shown = await in_scoring_thread(_pipeline, served_snapshot(request), settings,
                                        currency, group_by or None)
    except SHOWN as exc:
        return problem(request, "pipeline", exc)
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
