"""The deals pages: the open deals with their scores, one deal's prediction and
timeline, and its what-if (the same deal with another discount, terms or next step),
predicted by the coalescer of ``POST /v1/predict``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from serving.pages import data
from serving.pages.views import (
    SHOWN,
    caveats,
    page,
    page_router,
    problem,
    served_snapshot,
)
from serving.schemas import PredictRequest
from serving.threads import in_scoring_thread

router = page_router()


@router.get("/deals", response_class=HTMLResponse)
async def deals_page(request: Request, rep: str | None = None, region: str | None = None,
                     account: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> HTMLResponse:
    try:
        deals = await in_scoring_thread(data.open_deals, served_snapshot(request))
    except SHOWN as exc:
        return problem(request, "deals", exc)
    table = deals.table
    options = {c: sorted(table[c].dropna().astype(str).unique().tolist())
               for c in ("rep", "region") if c in table.columns}
    chosen = {"rep": rep or None, "region": region or None, "account": account or None}
    shown = table
    for column, value in chosen.items():
        if value and column in shown.columns:
            shown = shown[shown[column].astype(str).str.casefold() == value.casefold()]
    return page(request, "deals.html", active="deals", deals=shown.head(limit).to_dict(
        "records"), total=len(shown), limit=limit, options=options, chosen=chosen,
        as_of=deals.as_of, caveats=caveats(request))


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
    snapshot = served_snapshot(request)
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


@router.get("/deals/{case_id}", response_class=HTMLResponse)
async def deal_page(request: Request, case_id: str, discount: str | None = None,
                    terms: str | None = None, step: str | None = None) -> HTMLResponse:
    snapshot = served_snapshot(request)
    try:
        context = await _deal_context(request, case_id,
                                      _whatif_from_query(discount, terms, step))
        events = await run_in_threadpool(data.timeline, snapshot, case_id)
        choices = await run_in_threadpool(data.what_if_choices, snapshot)
        reliable = await run_in_threadpool(data.reliability, snapshot,
                                           context["p"]["events_used"])
    except data.NoDealError as exc:
        return problem(request, "deals", exc, status_code=404)
    except SHOWN as exc:
        return problem(request, "deals", exc)
    return page(request, "deal.html", active="deals", events=events.to_dict("records"),
                choices=choices, reliable=reliable, caveats=caveats(request), **context)


@router.get("/deals/{case_id}/whatif", response_class=HTMLResponse)
async def deal_whatif(request: Request, case_id: str, discount: str | None = None,
                      terms: str | None = None, step: str | None = None) -> HTMLResponse:
    """The what-if result alone: the deal page's script swaps it in as the form changes."""
    try:
        context = await _deal_context(request, case_id,
                                      _whatif_from_query(discount, terms, step))
    except data.NoDealError as exc:
        return problem(request, "deals", exc, status_code=404)
    except SHOWN as exc:
        return problem(request, "deals", exc)
    return page(request, "whatif.html", **context)
