"""The pipeline forecast for sales managers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.concurrency import run_in_threadpool

from features.log import EventLog
from serving.deps import SettingsDep, SnapshotDep
from serving.events import training_log_of
from serving.forecast import forecast, require_forecast_models
from serving.routes.predict import read_uploaded_log
from serving.schemas import ForecastResponse
from serving.store import Snapshot
from serving.threads import in_scoring_thread

router = APIRouter(prefix="/v1", tags=["forecast"])

GroupBy = Annotated[Literal["region", "rep", "lead_source", "product"] | None,
                    Query(description="split the forecast by this attribute")]
Months = Annotated[int | None, Query(ge=1, le=24, description="months ahead")]
Simulations = Annotated[int | None, Query(ge=100, le=20000)]


def training_log(snapshot: Snapshot) -> tuple[EventLog, str]:
    """The log the served outcome model was trained on (logged with its run)."""
    require_forecast_models(snapshot)
    served = snapshot.get("outcome")
    return training_log_of(served), f"training log of outcome model version {served.version}"


@router.get("/forecast", response_model=ForecastResponse)
async def forecast_trained(snapshot: SnapshotDep, settings: SettingsDep,
                           group_by: GroupBy = None, months: Months = None,
                           simulations: Simulations = None) -> dict[str, Any]:
    """Expected bookings and cash per month for the open cases of the last trained log."""
    log, source = await run_in_threadpool(training_log, snapshot)
    return await _run(snapshot, settings, log, source, group_by, months, simulations)


@router.post("/forecast", response_model=ForecastResponse)
async def forecast_upload(snapshot: SnapshotDep, settings: SettingsDep,
                          file: Annotated[UploadFile, File(description="CSV or Parquet log")],
                          group_by: GroupBy = None, months: Months = None,
                          simulations: Simulations = None) -> dict[str, Any]:
    """The same forecast for the open cases of an uploaded event log."""
    require_forecast_models(snapshot)  # before reading the file: say what is missing first
    name = file.filename or "upload.csv"
    # read as the outcome model reads an export: its training log is the forecast's too
    log = read_uploaded_log(name, await file.read(), snapshot.get("outcome").bundle.mapping)
    answer = await _run(snapshot, settings, log, name, group_by, months, simulations)
    ignored = log.quarantine
    if len(ignored):
        examples = "; ".join(f"row {row}: {detail}" for row, detail in zip(
            ignored["source_row"].head(3).tolist(),
            ignored["quarantine_detail"].head(3).tolist(), strict=True))
        answer["assumptions"].append(f"{len(ignored)} row(s) of {name} could not be used and "
                                     f"are left out, e.g. {examples}")
    return answer


async def _run(snapshot: Snapshot, settings: SettingsDep, log: EventLog, source: str,
               group_by: str | None, months: int | None,
               simulations: int | None) -> dict[str, Any]:
    return await in_scoring_thread(
        forecast, snapshot, log, source, group_by,
        months or settings.forecast_months, simulations or settings.forecast_simulations)
