"""Request and response models of the API (pydantic), with examples that work as they are.

The error answer's model is with the errors (``serving.errors``)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number (JSON has no Infinity or NaN)")
    return value


#: Python's JSON parser reads Infinity and NaN, which JSON does not have: refused here,
#: by field (a number that only overflows later, 1e999 as text, is refused per case)
AttributeValue = Annotated[str | float | int | bool | None, AfterValidator(_finite)]

EXAMPLE_CASE = {
    "case_id": "OPP-API-1",
    "attributes": {"value": 48000, "currency": "EUR", "rep": "Rep 07", "region": "EMEA North",
                   "account": "ACC-0042", "lead_source": "referral", "product": "Software",
                   "contract_type": "standard", "payment_terms": "Net 30"},
    "events": [
        {"activity": "Lead Captured", "timestamp": "2024-09-02T09:00:00Z", "resource": "Rep 07",
         "attributes": {"stage": "Lead"}},
        {"activity": "Opportunity Created", "timestamp": "2024-09-04T10:30:00Z",
         "resource": "Rep 07", "attributes": {"stage": "Prospecting"}},
        {"activity": "Opportunity Qualified", "timestamp": "2024-09-12T15:00:00Z",
         "resource": "Rep 07", "attributes": {"stage": "Qualification"}},
        {"activity": "Quote Issued", "timestamp": "2024-09-20T11:00:00Z", "resource": "Rep 07",
         "attributes": {"stage": "Proposal", "discount_pct": 12.5}},
    ],
}


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    activity: str = Field(min_length=1, max_length=200)
    timestamp: datetime = Field(description="ISO 8601; without an offset it is read as UTC")
    resource: str | None = Field(None, max_length=200)
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict, description="event attributes, e.g. stage, discount_pct")


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # blanks around an id are not part of it (the reader strips them too): "X " and "X"
    # must be one case everywhere, in notes and in which requests share a pass
    case_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=200)]
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict,
        description="case attributes by canonical name (value, rep, region, account, "
        "lead_source, product, contract_type, payment_terms, ...) or the mapping's names")
    events: list[EventIn] = Field(min_length=1, max_length=2000)


class PredictRequest(CaseIn):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_CASE]})

    explain: bool = True
    top_k: int = Field(5, ge=1, le=50)

    def answer_form(self) -> tuple[bool, int]:
        """How the answer is written; requests scored in one pass must share it."""
        return self.explain, self.top_k


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"cases": [EXAMPLE_CASE], "explain": False}]})

    cases: list[CaseIn] = Field(min_length=1)
    explain: bool = False
    top_k: int = Field(5, ge=1, le=50)

    @field_validator("cases")
    @classmethod
    def _one_entry_per_case(cls, cases: list[CaseIn]) -> list[CaseIn]:
        counts = Counter(c.case_id for c in cases)
        twice = sorted(case for case, n in counts.items() if n > 1)
        if twice:
            raise ValueError(f"each case once, with all its events: {', '.join(twice[:5])} "
                             "appear(s) more than once")
        return cases


class Contribution(BaseModel):
    feature: str
    readable: str
    value: str
    contribution: float
    direction: Literal["up", "down"]
    text: str


class Explanation(BaseModel):
    space: str = Field(description="the units in which base + contributions add up")
    base_value: float
    contributions: list[Contribution]
    other_features: float = Field(description="sum of the contributions not listed")
    total: float = Field(description="base_value + all contributions = the model's output")


class Interval(BaseModel):
    days: float
    p10_days: float
    p90_days: float


class RemainingTime(Interval):
    expected_end: datetime
    end_p10: datetime
    end_p90: datetime


class PaymentDelay(Interval):
    due_date: datetime | None = None
    expected_payment_date: datetime | None = None


class Prediction(BaseModel):
    case_id: str
    status: Literal["open", "won", "lost", "closed"]
    as_of: datetime
    events_used: int
    win_probability: float | None = None
    remaining_time: RemainingTime | None = None
    payment_delay: PaymentDelay | None = None
    explanations: dict[str, Explanation] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    model_versions: dict[str, int] = Field(default_factory=dict)


class BatchResponse(BaseModel):
    predictions: list[Prediction]
    cases: int
    rows_ignored: int = Field(0, description="events (rows of a file) that could not be used; "
                              "each is noted on its case, with the reason")
    unscored: dict[str, list[str]] = Field(
        default_factory=dict, description="cases none of whose events could be used, with "
        "why (so no case sent is missing from the answer without a word)")
    seconds: float


class ForecastBand(BaseModel):
    expected: float
    p10: float
    p50: float
    p90: float


class ForecastMonth(BaseModel):
    month: str
    bookings: ForecastBand
    cash_in: ForecastBand


class ForecastGroup(BaseModel):
    group: str
    open_cases: int
    won_unpaid_cases: int = 0
    bookings: ForecastBand
    cash_in: ForecastBand


class Mover(BaseModel):
    case_id: str
    value: float
    win_probability: float
    expected_bookings: float
    bookings_sd: float
    group: str | None = None


class ForecastResponse(BaseModel):
    source: str
    as_of: datetime
    open_cases: int
    won_unpaid_cases: int = Field(0, description="won deals awaiting payment: cash only")
    deals_without_value: int = Field(0, description="counted as 0; listed in assumptions")
    simulations: int
    currency_note: str
    total_bookings: ForecastBand
    total_cash_in: ForecastBand
    months: list[ForecastMonth]
    groups: list[ForecastGroup] = Field(default_factory=list)
    group_by: str | None = None
    movers: list[Mover]
    assumptions: list[str]


class ModelInfo(BaseModel):
    target: str
    registered_name: str
    version: int
    run_id: str
    trained_on: dict[str, Any]
    split_time: str | None = None
    test_metrics: dict[str, float]
    kind: str = Field("lightgbm", description="what was shipped: lightgbm, logistic, or a "
                      "baseline (stage_rate, base_rate, median_by_last_activity, "
                      "account_terms_mean) when no learnt model beat it")
    kind_label: str | None = Field(None, description="the kind in words")
    is_baseline: bool = Field(False, description="the simple answer, not a learnt model")
    kind_reason: str | None = Field(None, description="why this kind was shipped: each "
                                    "candidate's figures on the latest training block")
    low_data: str | None = Field(None, description="set when trained below the minimum "
                                 "labelled cases: the counts and the minimum")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    load_errors: dict[str, str]


class ReadyResponse(BaseModel):
    status: Literal["ready", "partial", "not ready"] = Field(
        description="partial: some targets have no model; their answers are null, with a "
                    "note, and the forecast needs outcome and remaining_time")
    loaded: list[str]
    missing: list[str]
    broken: list[str] = Field(
        default_factory=list, description="targets whose champion cannot be served and no "
        "earlier version stands in: not ready (503) until a working one is promoted")
    errors: dict[str, str] | None = Field(None, description="with the key only")
    predict_passes: dict[str, Any] | None = Field(None, description="with the key only")


class InsightTable(BaseModel):
    rows: int = Field(description="rows of the whole table (records may be cut)")
    records: list[dict[str, Any]]


class InsightSection(BaseModel):
    available: bool
    reason: str | None = Field(None, description="why the section is unavailable")
    tables: dict[str, InsightTable]


class InsightResponse(BaseModel):
    """The process insight; each section's tables and their columns are documented in
    the ``insight`` package (``insight.analyze.Insight``)."""

    source: str
    headlines: list[str]
    notes: list[str]
    by: str | None = None
    sections: dict[str, InsightSection]
    by_segment: dict[str, Any] | None = None


class InsightSectionResponse(InsightSection):
    source: str
    section: str
