"""Mapping files: how one export's names and formats map onto the canonical log.

Users bring logs from Salesforce, SAP, Dynamics or a spreadsheet, in any language.
Everything that differs between exports lives in a YAML mapping, so reading a new
system's log is a matter of writing a mapping, never of changing code.

A column may be given as one name or as a list of candidates (the first one the file
has wins). A name ``X`` that the file lacks also matches ``case:X``: XES stores case
attributes on the trace, which our XES reader exposes as ``case:<key>``.
"""

from __future__ import annotations

import codecs
import difflib
import re
from datetime import date
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from features.errors import MappingError, MissingColumnsError
from features.schema import CANONICAL_KINDS, REQUIRED_ROLES

ColumnRef = str | list[str]
#: canonical roles that only the plain attribute features read, so ``label_only`` can
#: keep them out; the others (rep, stage, account ...) drive dedicated features
LABEL_ONLY_ROLES = ("value", "currency", "lead_source", "product", "contract_type",
                    "discount_pct", "lost_reason")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileFormat(_Strict):
    """How values are written in the export (CSV dialect, numbers, dates)."""

    separator: str = ","
    decimal: str = "."
    thousands: str | None = None
    encoding: str = "utf-8"
    timestamp_format: str = Field(
        "ISO8601", description="strftime pattern, or ISO8601 for any ISO 8601 form"
    )
    timezone: str = Field("UTC", description="zone of timestamps written without an offset")
    sheet: str | int = Field(0, description="Excel sheet name or index")
    repeated_local_times: Literal["infer", "earliest", "latest", "quarantine"] = Field(
        "infer",
        description="a local time in the hour a clock change repeats (autumn): 'infer' the "
        "reading that keeps each case's events in file order (else the earlier), take the "
        "'earliest' or 'latest' reading, or 'quarantine' the row")
    skipped_local_times: Literal["shift_forward", "quarantine"] = Field(
        "shift_forward",
        description="a local time in the hour a clock change skips (spring): move it to "
        "the first valid time after the gap, or 'quarantine' the row")
    max_unusable_timestamps: float = Field(
        0.05, ge=0, le=1,
        description="share of rows whose time is missing, unreadable or implausible above "
        "which the log is refused: a wrong timestamp_format or day/month order shows here")
    earliest_plausible: date | None = Field(
        None, description="events before this date are quarantined as implausible")
    latest_plausible: date | None = Field(
        None, description="events after this date are quarantined as implausible")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            close = difflib.get_close_matches(value, sorted(available_timezones()), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else \
                " (an IANA name such as Europe/Rome, America/New_York or UTC)"
            raise ValueError(f"unknown time zone {value!r}{hint}") from exc
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, latin-1, "
                             "cp1252)") from exc
        return value


class ExtraColumn(_Strict):
    """An attribute outside the canonical roles that should still become a feature.

    ``level``: ``case`` says the attribute has one value per case (the reader warns,
    with counts and an example, when a case holds several: a sign of the wrong column
    or a value that changes and so is an ``event`` attribute); ``event`` says it may
    change from event to event. Either way a prefix sees the last value known at its end.
    """

    column: ColumnRef
    type: Literal["category", "number", "date"] = Field(
        "category", description="date: read in the log's timestamp format and time zone; a "
        "prefix sees the days from its end to the date (negative once it has passed)")
    level: Literal["case", "event"] = "case"


class Roles(_Strict):
    """Which canonical activities carry meaning for the labels and the process."""

    won: list[str] = Field(default_factory=list)
    lost: list[str] = Field(default_factory=list)
    invoice: list[str] = Field(default_factory=list)
    payment: list[str] = Field(default_factory=list)
    case_end: list[str] | None = Field(
        None, description="activities after which a case has no events (later ones are "
        "quarantined); default lost+payment; [] for none"
    )
    measure_end: list[str] | None = Field(
        None, description="activities that end what remaining time measures, and so the "
        "evaluation horizon (e.g. until billed), while later events stay in the log; "
        "default: the case_end activities"
    )
    stage_order: list[str] = Field(
        default_factory=list, description="sales stages from first to last, for regressions"
    )
    expected_order: list[str] = Field(
        default_factory=list, description="the happy path, for out-of-order conformance features"
    )
    outcome_rule: Literal["any", "last_of_won_lost", "won_else_lost"] = Field(
        "any",
        description=(
            "'any': a case is won/lost when it contains a won/lost activity; "
            "'last_of_won_lost': the last of them decides (e.g. BPIC 2012 offers); "
            "'won_else_lost': won when a won activity happens, lost when the case reaches a "
            "lost or case_end activity first, or falls silent for lost_after_days"
        ),
    )
    label_only: list[str] = Field(
        default_factory=list,
        description="columns (canonical roles or extra columns) known only once the outcome "
        "is: never features (like lost_reason); see the leakage check of l2c train")
    lost_after_days: float | None = Field(
        None, gt=0, description="with won_else_lost: a case without any event for this "
        "many days (and no win before) is lost from the end of that silence; a case whose "
        "silence has not lasted this long by the extraction is still open")

    @model_validator(mode="after")
    def _absence_needs_a_way_to_lose(self) -> Roles:
        if self.outcome_rule == "won_else_lost":
            if not self.won:
                raise ValueError("outcome_rule won_else_lost needs roles.won")
            if self.lost_after_days is None and not (self.lost or self.end_activities):
                raise ValueError("outcome_rule won_else_lost needs lost_after_days, or lost "
                                 "or case_end activities, to know when a case is lost")
        elif self.lost_after_days is not None:
            raise ValueError("lost_after_days is read only with outcome_rule won_else_lost")
        return self

    @property
    def end_activities(self) -> list[str]:
        """Activities that close a case: nothing of it may come after them."""
        return self.case_end if self.case_end is not None else [*self.lost, *self.payment]

    @property
    def measure_end_activities(self) -> list[str]:
        """Activities that end the span remaining time measures."""
        return self.measure_end if self.measure_end is not None else self.end_activities


class PaymentTerms(_Strict):
    """How to read payment terms in days out of the exported terms column."""

    pattern: str = r"(\d+)"
    default_days: float | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles_with_one_group(cls, value: str) -> str:
        if re.compile(value).groups != 1:  # which group would hold the days?
            raise ValueError("payment_terms.pattern needs exactly one capture group (the "
                             "days); make other groups non-capturing: (?:...)")
        return value


class ProcessPolicy(_Strict):
    """How the process is meant to run, for the process insight (``l2c insight``)."""

    milestones: dict[str, list[str]] = Field(
        default_factory=dict,
        description="funnel steps in order: label -> the activities that reach it; default: "
        "lead, opportunity, qualified, quote, won, invoiced, paid, as the log has them")
    discount_policy_pct: float | None = Field(
        None, ge=0, description="quotes with a larger discount need an approval activity")
    approval: list[str] = Field(
        default_factory=list, description="activities that approve a discount above policy")


class RowFilter(_Strict):
    """Keep only rows whose column holds one of the values; the rest are quarantined."""

    column: ColumnRef
    values: list[str]


class Mapping(_Strict):
    """A whole mapping file. See ``features/mappings/simulator.yaml`` for a documented one."""

    name: str = "unnamed"
    format: FileFormat = Field(default_factory=FileFormat)
    columns: dict[str, ColumnRef]
    extra_columns: dict[str, ExtraColumn] = Field(default_factory=dict)
    activities: dict[str, str] = Field(
        default_factory=dict, description="export activity name -> canonical activity name"
    )
    activity_qualifier: ColumnRef | None = Field(
        None, description="column appended to the activity name, e.g. lifecycle:transition"
    )
    unknown_activities: Literal["keep", "quarantine"] = "keep"
    optional: list[str] = Field(
        default_factory=list,
        description="roles/extra columns the file may lack (left empty, with a warning); "
        "any other named column the file lacks is an error",
    )
    keep_rows: RowFilter | None = None
    constants: dict[str, str | float] = Field(
        default_factory=dict,
        description="canonical role -> one value for every row, for what an export only "
        "says once (a currency in a column header: currency: EUR)")
    activity_stages: dict[str, str] = Field(
        default_factory=dict,
        description="canonical activity -> sales stage, for exports without a stage column "
        "(or rows where it is empty): the stage an event of that activity is in")
    duplicate_events: Literal["quarantine", "keep"] = Field(
        "quarantine",
        description="rows equal in every column: 'quarantine' all but the first, or 'keep' "
        "them as real repeats (some systems log one step twice at the same moment)")
    events_from_columns: dict[str, ColumnRef] = Field(
        default_factory=dict,
        description="for a table with one row per deal: canonical activity -> date column; "
        "each date given becomes an event of that activity (in this order on equal times), "
        "carrying the row's other columns; instead of columns.activity and .timestamp")
    roles: Roles = Field(default_factory=Roles)
    payment_terms: PaymentTerms = Field(default_factory=PaymentTerms)
    process: ProcessPolicy = Field(default_factory=ProcessPolicy)

    @field_validator("columns")
    @classmethod
    def _known_roles_and_required(cls, value: dict[str, ColumnRef]) -> dict[str, ColumnRef]:
        unknown = sorted(set(value) - set(CANONICAL_KINDS))
        if unknown:
            raise ValueError(
                f"unknown canonical role(s) {unknown}; known: {list(CANONICAL_KINDS)} "
                "(put other attributes under extra_columns)"
            )
        if "case_id" not in value:
            raise ValueError("required role(s) ['case_id'] not mapped")
        return value

    @field_validator("extra_columns")
    @classmethod
    def _extras_do_not_shadow_roles(cls, value: dict[str, ExtraColumn]) -> dict[str, ExtraColumn]:
        clash = sorted(set(value) & set(CANONICAL_KINDS))
        if clash:
            raise ValueError(f"extra column name(s) {clash} clash with canonical roles")
        return value

    @model_validator(mode="after")
    def _events_come_from_rows_or_from_date_columns(self) -> Mapping:
        given = [r for r in ("activity", "timestamp") if r in self.columns]
        if self.events_from_columns and given:
            raise ValueError(f"columns {given} and events_from_columns both say where events "
                             "come from; keep one")
        if not self.events_from_columns and len(given) < 2:
            missing = [r for r in ("activity", "timestamp") if r not in given]
            raise ValueError(f"required role(s) {missing} not mapped (or map date columns "
                             "to activities under events_from_columns)")
        return self

    @model_validator(mode="after")
    def _label_only_names_plain_attributes(self) -> Mapping:
        allowed = set(self.extra_columns) | set(LABEL_ONLY_ROLES)
        wrong = sorted(set(self.roles.label_only) - allowed)
        if wrong:
            raise ValueError(
                f"roles.label_only: {wrong} cannot be left out of the features; name extra "
                f"columns or the roles {list(LABEL_ONLY_ROLES)} (the others carry the case "
                "itself: map a leaky export column as an extra column instead)")
        return self

    @model_validator(mode="after")
    def _constants_name_roles_not_columns(self) -> Mapping:
        unknown = sorted(set(self.constants) - set(CANONICAL_KINDS))
        if unknown:
            raise ValueError(f"constants: {unknown} are not canonical roles; known: "
                             f"{list(CANONICAL_KINDS)}")
        required = sorted(set(self.constants) & set(REQUIRED_ROLES))
        if required:
            raise ValueError(f"constants: {required} must come from the file, row by row")
        clash = sorted(set(self.constants) & set(self.columns))
        if clash:
            raise ValueError(f"constants: {clash} also mapped under columns; keep one")
        return self

    @cached_property
    def known_activities(self) -> frozenset[str]:
        """Canonical activity names this mapping knows (targets of the translation)."""
        return frozenset(self.activities.values()) | frozenset(self.events_from_columns)

    @cached_property
    def canonical_names(self) -> dict[str, str]:
        """Every name a column of this process may carry (canonical, the export's, an
        extra column's) -> the canonical or extra name it stands for; a canonical name
        stands for itself, whatever the export calls it."""
        names: dict[str, str] = {}
        for role, ref in [*self.columns.items(),
                          *((n, e.column) for n, e in self.extra_columns.items())]:
            for name in [ref] if isinstance(ref, str) else ref:
                names.setdefault(name, role)
        names.update({name: name for name in [*CANONICAL_KINDS, *self.extra_columns]})
        return names

    def for_canonical_events(self) -> Mapping:
        """This process (its roles, activities and policies) read from events already in
        canonical form: columns under their canonical names, times as ISO 8601 instants.
        How events sent one case at a time and a training run's logged events are read."""
        return self.model_copy(update={
            "format": FileFormat(timestamp_format="ISO8601", timezone="UTC"),
            "columns": {role: role for role in CANONICAL_KINDS},
            "extra_columns": {name: extra.model_copy(update={"column": name})
                              for name, extra in self.extra_columns.items()},
            "optional": [*(r for r in CANONICAL_KINDS if r not in REQUIRED_ROLES),
                         *self.extra_columns],
            # events already are events: the activities a deal table's dates were named
            # after stay known, as names of their own
            "activities": {**self.activities, **{a: a for a in self.events_from_columns}},
            "activity_qualifier": None, "keep_rows": None, "events_from_columns": {}})

    @classmethod
    def load(cls, path: str | Path) -> Mapping:
        """Read and check a mapping file; errors name the file and the offending key."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise MappingError(f"mapping file {path} does not exist") from exc
        except IsADirectoryError as exc:
            raise MappingError(f"mapping {path} is a directory; name the YAML file") from exc
        except UnicodeDecodeError as exc:
            raise MappingError(
                f"mapping file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                "save it as UTF-8 (the export's own encoding goes in format.encoding)"
            ) from exc
        except OSError as exc:
            raise MappingError(f"mapping file {path} cannot be read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise MappingError(f"mapping file {path} is not valid YAML: {exc}") from exc
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: object, source: str = "<mapping>") -> Mapping:
        if not isinstance(raw, dict):
            raise MappingError(f"{source}: a mapping must be a YAML mapping of keys")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                ".".join(str(p) for p in err["loc"]) + ": " * bool(err["loc"])
                + err["msg"].removeprefix("Value error, ") for err in exc.errors()
            )
            raise MappingError(f"{source}: invalid mapping: {problems}") from exc


def default_mapping() -> Mapping:
    """The mapping for the simulator's export and the Excel data template."""
    text = resources.files("features.mappings").joinpath("simulator.yaml").read_text("utf-8")
    return Mapping.from_dict(yaml.safe_load(text), source="features/mappings/simulator.yaml")


def resolve_column(ref: ColumnRef, available: list[str]) -> str | None:
    """The first candidate the file has, trying ``case:<name>`` for XES trace attributes."""
    candidates = [ref] if isinstance(ref, str) else list(ref)
    present = set(available)
    for name in candidates:
        if name in present:
            return name
        if f"case:{name}" in present:
            return f"case:{name}"
    return None


def resolve_columns(mapping: Mapping, available: list[str], source: str) -> dict[str, str]:
    """Canonical/extra name -> file column; a named column the file lacks is an error."""
    wanted: dict[str, ColumnRef] = dict(mapping.columns)
    wanted.update({name: extra.column for name, extra in mapping.extra_columns.items()})
    if mapping.activity_qualifier is not None:
        wanted["__activity_qualifier__"] = mapping.activity_qualifier
    if mapping.keep_rows is not None:
        wanted["__keep_rows__"] = mapping.keep_rows.column
    resolved: dict[str, str] = {}
    missing: dict[str, str] = {}
    optional = set(mapping.optional) - set(REQUIRED_ROLES)
    for role, ref in wanted.items():
        column = resolve_column(ref, available)
        if column is not None:
            resolved[role] = column
        elif role not in optional:
            missing[role] = ref if isinstance(ref, str) else " | ".join(ref)
    if missing:
        raise MissingColumnsError(source, missing, available)
    return resolved
