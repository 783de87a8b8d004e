"""The process insight over HTTP: the served models' training log, or an uploaded one.

Both answer with ``insight.Insight.to_dict()``: per section whether it is available
(and why not), and its tables as records, so a page and the API show the same numbers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, File, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from features.log import EventLog, canonicalize
from insight import InsightError, analyze
from serving.deps import SnapshotDep
from serving.errors import InsightRequestError
from serving.routes.predict import read_uploaded_log
from serving.schemas import InsightResponse, InsightSectionResponse
from serving.service import api_mapping
from serving.store import ModelsNotLoadedError, Snapshot

router = APIRouter(prefix="/v1/insight", tags=["insight"])

SectionName = Literal["overview", "process_map", "variants", "funnel", "bottlenecks",
                      "rework", "conformance", "discounts", "payments", "segments"]
By = Annotated[str | None, Query(
    description="repeat the analysis per segment: region, rep, lead_source, product, "
                "contract_type, month or another case attribute")]
MaxRows = Annotated[int, Query(ge=1, le=100_000, description="rows per table at most")]


def _served_run(snapshot: Snapshot) -> tuple[str, int, str]:
    """The run whose training log the served models describe (the outcome model's when
    served, else any served model's), with its version and target."""
    if not snapshot.models:
        raise ModelsNotLoadedError(
            "no model is being served, so there is no training log to describe: train and "
            "promote one, or POST a log to /v1/insight")
    served = snapshot.models.get("outcome") or next(iter(snapshot.models.values()))
    return served.run_id, served.version, served.target


_KEPT: OrderedDict[tuple[str, str | None, int], dict[str, Any]] = OrderedDict()
_KEEP = 8
_KEPT_LOCK = threading.Lock()


def _training_insight(snapshot: Snapshot, run_id: str, by: str | None,
                      max_rows: int) -> dict[str, Any]:
    """The insight of a run's training log (logged with the run), kept for the few
    runs and segmentations asked for last: the log of a run never changes."""
    key = (run_id, by, max_rows)
    with _KEPT_LOCK:  # requests run in the thread pool
        if key in _KEPT:
            _KEPT.move_to_end(key)
            return _KEPT[key]
    answer = _compute_training_insight(snapshot, run_id, by, max_rows)
    with _KEPT_LOCK:
        _KEPT[key] = answer
        while len(_KEPT) > _KEEP:
            _KEPT.popitem(last=False)
    return answer


def _compute_training_insight(snapshot: Snapshot, run_id: str, by: str | None,
                              max_rows: int) -> dict[str, Any]:
    import mlflow

    served = next(m for m in snapshot.models.values() if m.run_id == run_id)
    local = Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="evaluation/events.parquet"))
    events = pd.read_parquet(local).drop(columns=["source_row"], errors="ignore")
    mapping = served.bundle.mapping
    log = canonicalize(events, api_mapping(mapping), source=f"training log of run {run_id}")
    log.mapping = mapping  # the process policy and roles are the model's own mapping's
    return _analyzed(log, by, max_rows)


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
    run_id, _, _ = _served_run(snapshot)
    return await run_in_threadpool(_training_insight, snapshot, run_id, by, max_rows)


@router.get("/{section}", response_model=InsightSectionResponse)
async def insight_section(section: SectionName, snapshot: SnapshotDep, by: By = None,
                          max_rows: MaxRows = 1000) -> dict[str, Any]:
    """One section of the training log's insight (see ``GET /v1/insight``)."""
    run_id, _, _ = _served_run(snapshot)
    whole = await run_in_threadpool(_training_insight, snapshot, run_id, by, max_rows)
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
        return _analyzed(read_uploaded_log(name, data, snapshot), by, max_rows)

    return await run_in_threadpool(run)
