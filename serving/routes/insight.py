"""The process insight over HTTP: the served models' training log, or an uploaded one.

Both answer with ``insight.Insight.to_dict()``: per section whether it is available
(and why not), and its tables as records, so a page and the API show the same numbers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from features.log import EventLog
from insight import InsightError, analyze
from serving.cache import kept
from serving.deps import SnapshotDep
from serving.errors import InsightRequestError
from serving.events import training_log_of
from serving.routes.predict import read_uploaded_log
from serving.schemas import InsightResponse, InsightSectionResponse
from serving.scoring import served_mapping
from serving.store import ModelsNotLoadedError, ServedModel, Snapshot

router = APIRouter(prefix="/v1/insight", tags=["insight"])

SectionName = Literal["overview", "process_map", "variants", "funnel", "bottlenecks",
                      "rework", "conformance", "discounts", "payments", "segments"]
By = Annotated[str | None, Query(
    description="repeat the analysis per segment: region, rep, lead_source, product, "
                "contract_type, month or another case attribute")]
MaxRows = Annotated[int, Query(ge=1, le=100_000, description="rows per table at most")]


def served_for_insight(snapshot: Snapshot) -> ServedModel:
    """The model whose training log the insight describes: the outcome model when
    served, else any served one."""
    if not snapshot.models:
        raise ModelsNotLoadedError(
            "no model is being served, so there is no training log to describe: train and "
            "promote one, or POST a log to /v1/insight")
    return snapshot.models.get("outcome") or next(iter(snapshot.models.values()))


def _training_insight(snapshot: Snapshot, by: str | None, max_rows: int) -> dict[str, Any]:
    """The insight of the served training log, kept per run: its log never changes."""
    served = served_for_insight(snapshot)
    return kept(("insight", served.run_id, by, max_rows), lambda: _analyzed(
        training_log_of(served, f"training log of run {served.run_id}"), by, max_rows))


def _analyzed(log: EventLog, by: str | None, max_rows: int) -> dict[str, Any]:
    try:
        return analyze(log, by=by).to_dict(max_rows)
    except InsightError as exc:  # e.g. an attribute to segment by that the log lacks
        raise InsightRequestError(str(exc)) from exc


@router.get("", response_model=InsightResponse)
async def insight_of_training_log(snapshot: SnapshotDep, by: By = None,
                                  max_rows: MaxRows = 1000) -> dict[str, Any]:
    """The actual process of the log the served models were trained on: process map,
    variants, funnel, bottlenecks, rework, conformance, discounts, payments, segments."""
    return await run_in_threadpool(_training_insight, snapshot, by, max_rows)


@router.get("/{section}", response_model=InsightSectionResponse)
async def insight_section(section: SectionName, snapshot: SnapshotDep, by: By = None,
                          max_rows: MaxRows = 1000) -> dict[str, Any]:
    """One section of the training log's insight (see ``GET /v1/insight``)."""
    whole = await run_in_threadpool(_training_insight, snapshot, by, max_rows)
    return {"source": whole["source"], "section": section, **whole["sections"][section]}


@router.post("", response_model=InsightResponse)
async def insight_of_upload(snapshot: SnapshotDep,
                            file: Annotated[UploadFile, File(description="an event log in the "
                                                             "served mapping's format")],
                            by: By = None, max_rows: MaxRows = 1000) -> dict[str, Any]:
    """The same insight for an uploaded log, read through the served models' mapping."""
    data = await file.read()
    name = file.filename or "upload.csv"

    def run() -> dict[str, Any]:
        return _analyzed(read_uploaded_log(name, data, served_mapping(snapshot)), by,
                         max_rows)

    return await run_in_threadpool(run)
