"""Predictions for one running case or many."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import TypeAdapter, ValidationError

from features.errors import EventLogError
from features.io import detect_format, read_upload
from features.log import EventLog, canonicalize
from features.mapping import Mapping
from serving.answers import assemble
from serving.deps import CoalescerDep, SettingsDep, SnapshotDep
from serving.errors import (
    BadRequestBodyError,
    TooManyCasesError,
    UnreadableUploadError,
    validation_detail,
)
from serving.events import quarantine_notes
from serving.schemas import BatchRequest, BatchResponse, Prediction, PredictRequest
from serving.scoring import (
    ScoredCases,
    models_by_mapping,
    score_cases,
    score_logs,
)
from serving.settings import Settings
from serving.store import Snapshot
from serving.threads import in_scoring_thread

router = APIRouter(prefix="/v1", tags=["predictions"])


@router.post("/predict", response_model=Prediction)
async def predict(body: PredictRequest, snapshot: SnapshotDep,
                  coalescer: CoalescerDep) -> dict[str, Any]:
    """Win probability, time to close and payment, with SHAP explanations in words.

    Requests that arrive together are scored in one pass, each exactly as if alone."""
    return await coalescer.predict(snapshot, body)


_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary",
                                        "description": "CSV or Parquet event log in the "
                                        "model's mapping format"},
                               "explain": {"type": "boolean", "default": False}}}},
        },
    }
}


@router.post("/predict/batch", response_model=BatchResponse, openapi_extra=_BATCH_BODY)
async def predict_batch(request: Request, snapshot: SnapshotDep,
                        settings: SettingsDep) -> Response:
    """Many running cases at once: JSON cases, or an uploaded CSV/Parquet event log."""
    started = time.perf_counter()
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, detail="multipart body needs a 'file' field (CSV/Parquet)")
        explain = str(form.get("explain", "false")).lower() in ("1", "true", "yes")
        work = functools.partial(_score_upload, upload.filename or "upload.csv",
                                 await upload.read(), snapshot, settings, explain)
    else:
        try:
            body = BatchRequest.model_validate(parse_json_body(await request.body()))
        except ValidationError as exc:
            raise HTTPException(422, detail=validation_detail(exc.errors())) from exc
        _check_batch_size(len(body.cases), settings.max_batch_cases)
        work = functools.partial(_answer_batch, snapshot, body.explain, body.top_k,
                                 lambda: score_cases(snapshot, body.cases, body.explain))
    return Response(content=await in_scoring_thread(work, started),
                    media_type="application/json")


def parse_json_body(data: bytes) -> Any:
    """The body as JSON, or a 422 that says why not. Python's parser raises
    ``RecursionError`` on deep nesting (a few KB of ``[`` is enough) and
    ``UnicodeDecodeError`` on bytes that are not UTF-8: both are the body's fault."""
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise BadRequestBodyError(
            f"body is not UTF-8 text ({exc.reason} at byte {exc.start}): send JSON in "
            "UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise BadRequestBodyError(f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequestBodyError("body is not usable JSON: nested too deeply") from exc


def _score_upload(filename: str, data: bytes, snapshot: Snapshot, settings: Settings,
                  explain: bool, started: float) -> bytes:
    logs: dict[str, EventLog] = {}
    for group in models_by_mapping(snapshot):  # each model reads the file its own way
        log = read_uploaded_log(filename, data, group[0].bundle.mapping)
        logs.update({served.target: log for served in group})
    first = next(iter(logs.values()))
    _check_batch_size(first.events["case_id"].nunique(), settings.max_batch_cases)
    notes: dict[str, list[str]] = {}
    quarantine_notes(first, notes, "row")
    return _answer_batch(snapshot, explain, 5,
                         lambda: score_logs(snapshot, logs, notes, explain=explain), started)


def _answer_batch(snapshot: Snapshot, explain: bool, top_k: int,
                  score: Callable[[], ScoredCases], started: float) -> bytes:
    scored = score()
    predictions = assemble(scored, snapshot, explain, top_k)
    answered = {p["case_id"] for p in predictions}
    answer = {"predictions": predictions, "cases": len(predictions),
              "rows_ignored": len(scored.log.quarantine),
              "unscored": {case: notes for case, notes in scored.notes.items()
                           if case not in answered},
              "seconds": time.perf_counter() - started}
    # straight to JSON: re-validating 10k explained cases against the response model
    # would take long (docs/performance.md); the tests hold the answer to BatchResponse
    return _AS_JSON.dump_json(answer)


_AS_JSON = TypeAdapter(Any)


def _check_batch_size(cases: int, limit: int) -> None:
    if cases > limit:
        raise TooManyCasesError(f"{cases} cases in one batch; the limit is {limit}")


def read_uploaded_log(filename: str, data: bytes, mapping: Mapping) -> EventLog:
    """An uploaded export read through a served model's mapping.

    Each format's library has errors of its own for a broken file (``BadZipFile`` for
    an ``.xlsx`` that is not a zip, pyarrow's for a bad Parquet, XML errors...): at this
    boundary every one of them means the upload cannot be read, and says so by name."""
    kind = detect_format(filename)  # an unknown extension: its own message (422)
    try:
        raw = read_upload(filename, data, mapping.format)
    except EventLogError:
        raise
    except Exception as exc:
        raise UnreadableUploadError(
            f"{filename}: cannot read the file as {kind} ({type(exc).__name__}: {exc})"
        ) from exc
    if raw.empty:
        raise UnreadableUploadError(f"{filename}: the file holds no events")
    log = canonicalize(raw, mapping, source=filename)
    if len(log) == 0:
        reasons = "; ".join(f"row {row}: {detail}" for row, detail in zip(
            log.quarantine["source_row"].head(5).tolist(),
            log.quarantine["quarantine_detail"].head(5).tolist(), strict=True))
        raise UnreadableUploadError(
            f"{filename}: no usable event: all {len(log.quarantine)} row(s) quarantined, "
            f"e.g. {reasons}")
    if log.report.errors:  # read wrongly as a whole (day and month mixed up ...), as
        # `l2c validate` and `l2c train` refuse it: scoring it would answer wrongly
        raise UnreadableUploadError("; ".join(log.report.errors))
    return log
