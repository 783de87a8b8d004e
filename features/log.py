"""From a raw export to the canonical log, with every unusable row accounted for.

``read_log`` is the one entry point: read the file, apply the mapping, check every
row. Rows that cannot be used are never dropped silently: each goes to the quarantine
with a reason and a detail naming the column and the value, and the report keeps the
books (rows in = rows kept + rows quarantined).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

from features import small
from features.errors import EventLogError, LogRefusedError, MappingError, MissingColumnsError
from features.io import (
    READER_WARNINGS,
    UNCALCULATED_FORMULAS,
    UNREADABLE_ROWS,
    read_raw,
    sidecar_path,
)
from features.mapping import (
    FileFormat,
    Mapping,
    default_mapping,
    resolve_column,
    resolve_columns,
)
from features.prefixes import (
    columns_in_case_time_order,
    epoch_micros,
    in_case_time_order,
)
from features.schema import (
    CANONICAL_KINDS,
    NON_NEGATIVE,
    PLAUSIBLE_YEARS,
    ROW_COLUMN,
    TIMESTAMP_DTYPE,
    empty_column,
    text_dtype,
)
from features.small import SMALL_FRAME_ROWS

_EXAMPLES_PER_REASON = 5
#: a UTC offset ends the text: Z, +01:00, +0100, or +01 right after a time (so a bare
#: date such as 2024-01-05 is not read as having the offset -05)
_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2}|:\d{2}(?:\.\d+)?[+-]\d{2})$"


@dataclass
class ValidationReport:
    """What happened to every row, and what a user should look at."""

    source: str
    rows_in: int = 0
    rows_kept: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    unknown_activities: Counter[str] = field(default_factory=Counter)
    absent_optional: list[str] = field(default_factory=list)
    #: what a user should know about rows that were kept (clock changes, odd dates ...)
    notes: list[str] = field(default_factory=list)
    #: why the log as a whole cannot be trusted (e.g. day and month mixed up): a
    #: command refuses it; the rows are still read and counted, to be looked at
    errors: list[str] = field(default_factory=list)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())

    @property
    def warnings(self) -> list[str]:
        notes = list(self.notes)
        if self.absent_optional:
            notes.append(f"{self.source}: optional role(s) not in the file, left empty: "
                         f"{', '.join(self.absent_optional)}")
        if not self.unknown_activities:
            return notes
        listed = ", ".join(f"{name!r} ({n})" for name, n in self.unknown_activities.most_common(10))
        return [
            *notes,
            f"{self.source}: {sum(self.unknown_activities.values())} event(s) with "
            f"{len(self.unknown_activities)} activity name(s) the mapping does not list: {listed}",
        ]

    def note(self, reason: str, messages: list[str], count: int) -> None:
        if count:
            self.quarantined[reason] += count
            self.examples.setdefault(reason, []).extend(messages)


class EventLog:
    """A canonical log with the mapping that produced it and the books on its rows.

    ``columns``: the events' columns as arrays, when the reader built them in the log's
    order and kept every row; ``events`` is then built from them on first use, and a
    small log is encoded from them without a frame (docs/performance.md says what one costs).
    """

    def __init__(self, events: pd.DataFrame | None = None, *,
                 quarantine: pd.DataFrame, report: ValidationReport, mapping: Mapping,
                 columns: dict[str, Column] | None = None) -> None:
        if events is None and columns is None:
            raise ValueError("an EventLog needs its events, as a frame or as columns")
        self._events = events
        self.columns = columns
        self.quarantine = quarantine
        self.report = report
        self.mapping = mapping

    @property
    def events(self) -> pd.DataFrame:
        if self._events is None:
            self._events = pd.DataFrame(self.columns, copy=False)
        return self._events

    @events.setter
    def events(self, frame: pd.DataFrame) -> None:
        self._events, self.columns = frame, None  # the old columns would not match

    def column(self, name: str) -> Column:
        """One column of the events as an array (read off the frame if none is held)."""
        return self.columns[name] if self.columns is not None else self.events[name].array

    def table(self) -> pd.DataFrame | dict[str, Column]:
        """The events as the encoders take them: the columns when held, else the frame."""
        return self.columns if self.columns is not None else self.events

    def __len__(self) -> int:
        """Events kept (the quarantine's rows are not counted)."""
        return len(self._events) if self._events is not None else len(
            next(iter(self.columns.values()), ()))


# ------------------------------------------------------------------ parsing steps
# Each step returns the canonical column as an array (numpy or pandas' extension
# array), not a Series: on a small table a Series operation costs far more than the array's
# (it aligns an index), and canonicalize makes about a hundred of them.
Column = np.ndarray | ExtensionArray

_HAS_OFFSET = re.compile(_OFFSET)


def _as_text(series: pd.Series) -> ExtensionArray:
    """Text with surrounding blanks removed and empty strings as missing."""
    n = len(series)
    textual = series.dtype == object or pd.api.types.is_string_dtype(series.dtype)
    if n <= SMALL_FRAME_ROWS and textual:  # a small table (other dtypes, e.g. dates or
        # float32, keep pandas' own text form)
        return pd.array(small.stripped_text(series.tolist()), dtype=text_dtype(n))
    text = series.astype(text_dtype(n)).str.strip()
    return text.mask(series.isna() | (text == "")).array


@dataclass
class _Times:
    """Parsed times, and the rows a clock change made special (see ``FileFormat``)."""

    values: ExtensionArray
    repeated: np.ndarray  # local time in the hour repeated in autumn
    skipped: np.ndarray   # local time in the hour skipped in spring


def _parse_timestamps(raw: pd.Series, mapping: Mapping, case_ids: Column) -> _Times:
    fmt = mapping.format
    n = len(raw)
    none = np.zeros(n, dtype=bool)
    if isinstance(raw.dtype, pd.DatetimeTZDtype):  # instants (a typed export, canonical events):
        # on the array, not through ``.dt`` (a copy)
        return _Times(raw.array.tz_convert("UTC").astype(TIMESTAMP_DTYPE), none, none)
    if pd.api.types.is_datetime64_dtype(raw.dtype):  # local times of a typed export
        return _localize(raw.reset_index(drop=True), fmt, np.asarray(case_ids))
    text = _as_text(raw)
    if len(text) <= SMALL_FRAME_ROWS:
        has_offset = small.matches(text.tolist(), _HAS_OFFSET)
    else:
        has_offset = pd.Series(text).str.contains(_OFFSET, regex=True, na=False).to_numpy()
    if has_offset.all():  # the usual ISO export (and canonical events): one parse
        return _Times(_parse_aware(text, fmt.timestamp_format), none, none)
    result = pd.array(np.full(n, np.datetime64("NaT", "us")), dtype=TIMESTAMP_DTYPE)
    repeated, skipped = none.copy(), none.copy()
    if has_offset.any():
        result[has_offset] = _parse_aware(text[has_offset], fmt.timestamp_format)
    naive_mask = ~has_offset & ~text.isna()
    if naive_mask.any():
        naive = pd.to_datetime(pd.Series(text[naive_mask]), format=fmt.timestamp_format,
                               errors="coerce")
        local = _localize(naive, fmt, np.asarray(case_ids)[naive_mask])
        result[naive_mask] = local.values
        repeated[naive_mask], skipped[naive_mask] = local.repeated, local.skipped
    return _Times(result, repeated, skipped)


def _localize(naive: pd.Series, fmt: FileFormat, case_ids: np.ndarray) -> _Times:
    """Local wall-clock times to UTC, with the mapping's policy for clock changes.

    A time in the repeated autumn hour has two readings, one in the skipped spring hour
    none; pandas refuses both unless told. 'infer' takes, per case in file order, the
    earlier reading unless that would put the event before the case's previous one.
    """
    zone = fmt.timezone
    n = len(naive)
    given = naive.notna().to_numpy()
    plain = naive.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    if not (given & plain.isna().to_numpy()).any():  # no time in a clock change's hour
        none = np.zeros(n, dtype=bool)
        return _Times(plain.dt.tz_convert("UTC").astype(TIMESTAMP_DTYPE).array, none, none)
    early = naive.dt.tz_localize(zone, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
    late = naive.dt.tz_localize(zone, ambiguous=np.zeros(n, dtype=bool), nonexistent="NaT")
    skipped = given & early.isna().to_numpy()
    repeated = given & ~skipped & (early != late).to_numpy()
    chosen = early
    if repeated.any():
        if fmt.repeated_local_times == "latest":
            chosen = early.where(~repeated, late)
        elif fmt.repeated_local_times == "quarantine":
            chosen = early.where(~repeated)
        elif fmt.repeated_local_times == "infer":
            chosen = early.where(~(repeated & _earlier_breaks_order(early, case_ids)), late)
    if skipped.any() and fmt.skipped_local_times == "shift_forward":
        shifted = naive.dt.tz_localize(zone, ambiguous=np.ones(n, dtype=bool),
                                       nonexistent="shift_forward")
        chosen = chosen.where(~skipped, shifted)
    utc = chosen.dt.tz_convert("UTC").astype(TIMESTAMP_DTYPE).array
    return _Times(utc, repeated, skipped)


def _earlier_breaks_order(early: pd.Series, case_ids: np.ndarray) -> np.ndarray:
    """Whether reading each row's time early puts it before its case's previous row."""
    codes, _ = pd.factorize(case_ids, use_na_sentinel=True)
    order = np.argsort(codes, kind="stable")  # file order within each case
    micros = epoch_micros(early.array)[order]
    same_case = np.zeros(len(order), dtype=bool)
    same_case[1:] = codes[order][1:] == codes[order][:-1]
    previous = np.empty_like(micros)
    previous[0] = micros[0]
    previous[1:] = micros[:-1]
    breaks = np.zeros(len(order), dtype=bool)
    breaks[order] = same_case & (micros < previous)
    return breaks


def _parse_aware(text: ExtensionArray, timestamp_format: str) -> ExtensionArray:
    aware = pd.to_datetime(text, format=timestamp_format, errors="coerce", utc=True)
    return aware.astype(TIMESTAMP_DTYPE).array


def _parse_numbers(raw: pd.Series, mapping: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """The numbers, and where a value was given but is not a number."""
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.to_numpy(dtype="float64", na_value=np.nan), np.zeros(len(raw), dtype=bool)
    text = _as_text(raw)
    given = ~text.isna()
    fmt = mapping.format
    if fmt.thousands or fmt.decimal != ".":
        series = pd.Series(text)
        if fmt.thousands:
            series = series.str.replace(fmt.thousands, "", regex=False)
        if fmt.decimal != ".":
            series = series.str.replace(fmt.decimal, ".", regex=False)
        text = series.array
    numbers = np.asarray(pd.to_numeric(text, errors="coerce"), dtype="float64")  # ndarray
    return numbers, given & np.isnan(numbers)


def _terms_days(terms: ExtensionArray, mapping: Mapping) -> np.ndarray:
    if len(terms) <= SMALL_FRAME_ROWS:
        days = small.first_groups(terms.tolist(), mapping.payment_terms.pattern)
    else:
        days = pd.Series(terms).str.extract(mapping.payment_terms.pattern, expand=False)
    parsed = np.asarray(pd.to_numeric(days, errors="coerce"), dtype="float64")
    if mapping.payment_terms.default_days is not None:
        parsed = np.where(np.isnan(parsed), mapping.payment_terms.default_days, parsed)
    return parsed


def _row_messages(source: str, rows: pd.Series, column: str, quoted: list[Any],
                  why: str) -> list[str]:
    head = min(_EXAMPLES_PER_REASON, len(rows))
    return [
        f"{source}: row {int(r)}, column {column!r}: {why}{_value_said(v)}"
        for r, v in zip(rows.iloc[:head], quoted[:head], strict=True)
    ]


def _value_said(value: Any) -> str:
    """`` (value 'x')``, or nothing for an empty cell ("value nan" reads as a value)."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else \
        f" (value {value!r})"


def _quoted(values: pd.Series | Column) -> list[Any]:
    """The values as a message quotes them; times as ISO text, as pandas cannot print a
    time past the year 9999, and such a time is just what gets quarantined."""
    dtype = values.dtype
    if not (isinstance(dtype, pd.DatetimeTZDtype) or (
            isinstance(dtype, np.dtype) and dtype.kind == "M")):  # e.g. pyarrow's own times
        return values.tolist()
    stamps = np.datetime_as_string(epoch_micros(values).view("datetime64[us]"), unit="s")
    zone = "Z" if isinstance(dtype, pd.DatetimeTZDtype) else ""
    return [s if s == "NaT" else s + zone for s in stamps.tolist()]


# ----------------------------------------------------------------- canonicalise
def canonicalize(raw: pd.DataFrame, mapping: Mapping, source: str = "<frame>") -> EventLog:
    """Apply the mapping to a raw frame; quarantine, with reasons, what cannot be used."""
    if ROW_COLUMN not in raw.columns:
        raw = raw.assign(**{ROW_COLUMN: np.arange(1, len(raw) + 1, dtype="int64")})
    if not (isinstance(raw.index, pd.RangeIndex) and raw.index.start == 0
            and raw.index.step == 1):
        raw = raw.reset_index(drop=True)
    deal_rows = len(raw)
    if mapping.events_from_columns:
        raw, read_as = _deal_rows_to_events(raw, mapping, source), mapping.model_copy(
            update={"columns": {**mapping.columns, "activity": _EVENT_ACTIVITY,
                                "timestamp": _EVENT_TIME}})
    else:
        read_as = mapping
    available = [c for c in raw.columns if c != ROW_COLUMN]
    columns = resolve_columns(read_as, available, source)
    report = ValidationReport(source=source, rows_in=len(raw))
    if mapping.events_from_columns:
        report.notes.append(f"{source}: {deal_rows:,} row(s), one per case, read as "
                            f"{len(raw):,} event(s) of the date columns (events_from_columns)")
    report.absent_optional = [r for r in mapping.optional if r not in columns]
    n = len(raw)
    # per row, why it is quarantined (None: usable); numpy, as most checks find nothing
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)

    def flag(mask: np.ndarray, why: str, column: str, values: pd.Series | Column | None,
             text: str) -> None:
        """Quarantine the rows of ``mask`` not yet quarantined, quoting ``values`` (by
        default the raw column: read only when a row is flagged)."""
        fresh = np.asarray(mask, dtype=bool) & pd.isna(reason)
        if not fresh.any():
            return
        if values is None:
            values = raw[column]
        quoted = _quoted(values[fresh])
        reason[fresh] = why
        detail[fresh] = [f"column {column!r}: {text}{_value_said(v)}" for v in quoted]
        report.note(why, _row_messages(source, raw[ROW_COLUMN][fresh], column, quoted, text),
                    int(fresh.sum()))

    uncalculated = raw.attrs.get(UNCALCULATED_FORMULAS, {})
    for column in sorted(set(columns.values()) & set(uncalculated)):
        rows, formulas = uncalculated[column]
        at = np.isin(raw[ROW_COLUMN].to_numpy(), rows)
        text = pd.Series(pd.NA, index=raw.index, dtype=object)
        text[at] = formulas
        flag(at, "formula_without_value", column, text,
             "a formula the workbook holds no calculated value for; open the file in a "
             "spreadsheet program and save it, or paste the values")

    out: dict[str, Column] = {}
    if "__keep_rows__" in columns:
        col = columns["__keep_rows__"]
        keep_values = set(mapping.keep_rows.values) if mapping.keep_rows else set()
        flag(~_as_text(raw[col]).isin(sorted(keep_values)), "excluded_by_mapping", col, None,
             f"not one of {sorted(keep_values)} (keep_rows in the mapping)")

    case_col = columns["case_id"]
    out["case_id"] = _as_text(raw[case_col])
    flag(out["case_id"].isna(), "empty_case_id", case_col, None, "empty case id")

    act_col = columns["activity"]
    exported = _as_text(raw[act_col])
    if mapping.events_from_columns:
        dates = [resolve_column(ref, available) for ref in mapping.events_from_columns.values()]
        flag(exported.isna(), "no_event_dates", dates[0], None,
             f"none of the date columns {dates} holds a date (events_from_columns)")
    flag(exported.isna(), "empty_activity", act_col, None, "empty activity")
    if "__activity_qualifier__" in columns:
        qualifier = _as_text(raw[columns["__activity_qualifier__"]])
        exported = pd.Series(exported).where(qualifier.isna(),
                                             pd.Series(exported) + "+" + qualifier).array
    out["activity"] = _translate_activities(exported, mapping)

    ts_col = columns["timestamp"]
    times = _parse_timestamps(raw[ts_col], mapping, out["case_id"])
    out["timestamp"] = times.values
    missing = pd.isna(out["timestamp"])
    if missing.any():
        flag(missing & _as_text(raw[ts_col]).isna(), "empty_timestamp", ts_col, None,
             "empty timestamp")
    fmt = mapping.format
    if times.repeated.any():
        flag(times.repeated & missing, "ambiguous_local_time", ts_col, None,
             f"local time in the hour repeated when {fmt.timezone} clocks went back "
             "(format.repeated_local_times: quarantine)")
    if times.skipped.any():
        flag(times.skipped & missing, "nonexistent_local_time", ts_col, None,
             f"local time in the hour skipped when {fmt.timezone} clocks went forward "
             "(format.skipped_local_times: quarantine)")
    expected = fmt.timestamp_format
    flag(missing, "unparseable_timestamp", ts_col, None,
         f"cannot parse as a timestamp (expected format {expected})")
    first, last = PLAUSIBLE_YEARS
    micros = epoch_micros(out["timestamp"])  # NaT rows are flagged above already
    plausible = (micros >= _year_start_micros(first)) & (micros < _year_start_micros(last + 1))
    flag(~plausible, "implausible_timestamp", ts_col, None,
         f"outside the years {first}-{last} (a placeholder date?)")
    if fmt.earliest_plausible is not None or fmt.latest_plausible is not None:
        low = _day_micros(fmt.earliest_plausible, 0, np.iinfo(np.int64).min)
        high = _day_micros(fmt.latest_plausible, 1, np.iinfo(np.int64).max)
        flag((micros < low) | (micros >= high), "implausible_timestamp", ts_col, None,
             f"outside {fmt.earliest_plausible or '...'} to {fmt.latest_plausible or '...'} "
             "(format.earliest_plausible / latest_plausible in the mapping)")
    report.notes.extend(_clock_change_notes(times, missing, fmt, source))

    for role, kind in CANONICAL_KINDS.items():
        if role in out or role == "payment_terms_days":
            continue
        if role in mapping.constants:
            out[role] = _constant_column(mapping.constants[role], kind, n, role)
            continue
        if role not in columns:
            out[role] = empty_column(kind, n).array
            continue
        source_col = columns[role]
        if kind == "number":
            out[role] = _number_column(raw, source_col, mapping, flag)
        else:
            out[role] = _as_text(raw[source_col])
    out["payment_terms_days"] = _terms_days(out["payment_terms"], mapping)
    if mapping.activity_stages:
        out["stage"] = _stages_from_activities(out["stage"], out["activity"], mapping)

    for name, extra in mapping.extra_columns.items():
        if name not in columns:
            out[name] = empty_column("time" if extra.type == "date" else extra.type, n).array
            continue
        source_col = columns[name]
        if extra.type == "number":
            out[name] = _number_column(raw, source_col, mapping, flag)
        elif extra.type == "date":
            dates = _parse_timestamps(raw[source_col], mapping, out["case_id"]).values
            flag(pd.isna(dates) & ~_as_text(raw[source_col]).isna(), "unparseable_date",
                 source_col, None, f"cannot parse as a date (expected format "
                 f"{mapping.format.timestamp_format})")
            out[name] = dates
        else:
            out[name] = _as_text(raw[source_col])

    for role in NON_NEGATIVE:
        if role in columns:
            flag(out[role] < 0, "negative_amount", columns.get(role, role), out[role],
                 "negative amount")

    unknown = _unknown_activities(out["activity"], mapping)
    if mapping.activities and unknown.any() and mapping.unknown_activities == "quarantine":
        flag(unknown, "unknown_activity", act_col, None,
             "activity not listed in the mapping")

    out[ROW_COLUMN] = raw[ROW_COLUMN].to_numpy(copy=True)
    usable = pd.isna(reason)
    if mapping.duplicate_events == "quarantine" and (n > SMALL_FRAME_ROWS or _may_hold_duplicates(
            raw, [columns[r] for r in ("case_id", "activity", "timestamp")], usable)):
        _flag_duplicates(raw, usable, reason, detail, report, source)
    _flag_after_case_end(out, reason, detail, report, source, mapping)

    if mapping.activities and mapping.unknown_activities == "keep":
        still_unknown = unknown & pd.isna(reason)
        if still_unknown.any():
            report.unknown_activities.update(
                pd.Series(out["activity"][still_unknown]).value_counts().to_dict())
    # from the arrays: from Series, pandas would align ~20 indexes on every small log
    flagged = ~pd.isna(reason)
    case_level_notes = _case_level_changes(out, ~flagged, mapping, columns, source)
    kept: pd.DataFrame | None = None
    columns: dict[str, Column] | None = None
    if flagged.any():
        kept = in_case_time_order(pd.DataFrame(out, copy=False)[~flagged], ROW_COLUMN)
        quarantine = raw[flagged].copy()
        quarantine.insert(0, "quarantine_detail", pd.array(detail[flagged], dtype="str"))
        quarantine.insert(0, "quarantine_reason", pd.array(reason[flagged], dtype="str"))
        quarantine = quarantine.reset_index(drop=True)
    else:  # the usual small log: every row kept, the columns in order are the log (a frame
        # only if asked for); an empty quarantine of the same columns, built once per layout
        columns = columns_in_case_time_order(out, ROW_COLUMN)
        quarantine = _empty_quarantine(raw).copy(deep=False)
    unreadable = raw.attrs.get(UNREADABLE_ROWS)
    if unreadable is not None and len(unreadable):
        quarantine = _add_unreadable_rows(quarantine, unreadable, report, source)
    log = EventLog(kept, columns=columns, quarantine=quarantine, report=report,
                   mapping=mapping)
    report.rows_kept = len(log)
    report.notes.extend(raw.attrs.get(READER_WARNINGS, []))
    report.notes.extend(case_level_notes)
    if n > 0:
        _check_times_of_the_whole_log(raw[ts_col], raw[ROW_COLUMN].to_numpy(), micros,
                                      ~flagged, report, fmt, source)
    if report.rows_kept + report.rows_quarantined != report.rows_in:  # pragma: no cover
        raise AssertionError("row books do not balance: a row was lost")
    return log


def _clock_change_notes(times: _Times, missing: np.ndarray, fmt: FileFormat,
                        source: str) -> list[str]:
    """Rows kept through a clock-change policy: counted, so the user knows it happened."""
    notes = []
    repeated = int((times.repeated & ~missing).sum())
    if repeated:
        notes.append(
            f"{source}: {repeated:,} local time(s) fall in the hour repeated when "
            f"{fmt.timezone} clocks went back; read as format.repeated_local_times says "
            f"({fmt.repeated_local_times})")
    skipped = int((times.skipped & ~missing).sum())
    if skipped:
        notes.append(
            f"{source}: {skipped:,} local time(s) fall in the hour skipped when "
            f"{fmt.timezone} clocks went forward; moved past the gap "
            "(format.skipped_local_times: shift_forward)")
    return notes


_EVENT_ACTIVITY, _EVENT_TIME = "event activity", "event time"


def _deal_rows_to_events(raw: pd.DataFrame, mapping: Mapping, source: str) -> pd.DataFrame:
    """One row per deal -> one row per date given, in the mapping's order of activities.

    Each event carries its row's number and other columns; a row without any date keeps
    one row with an empty activity, to be quarantined with its reason (never dropped).
    """
    available = [c for c in raw.columns if c != ROW_COLUMN]
    found = {activity: resolve_column(ref, available)
             for activity, ref in mapping.events_from_columns.items()}
    missing = {a: ref if isinstance(ref, str) else " | ".join(ref)
               for a, ref in mapping.events_from_columns.items() if found[a] is None}
    if missing:
        raise MissingColumnsError(source, {f"events_from_columns.{a}": c
                                           for a, c in missing.items()}, available)
    clash = {_EVENT_ACTIVITY, _EVENT_TIME} & set(raw.columns)
    if clash:
        raise MappingError(f"{source}: the file has column(s) {sorted(clash)}, the names "
                           "events_from_columns gives the events it makes; rename them")
    k = len(found)
    given = np.column_stack([~_as_text(raw[c]).isna() for c in found.values()])
    none = ~given.any(axis=1)
    take = given | (none[:, None] & (np.arange(k) == 0))  # row-major: deal, then activity
    rows, which = np.nonzero(take)
    events = raw.iloc[rows].reset_index(drop=True)
    activities = np.asarray(list(found), dtype=object)[which]
    activities[none[rows]] = None
    dates = np.column_stack([raw[c].to_numpy(dtype=object) for c in found.values()])
    events[_EVENT_ACTIVITY] = pd.array(activities, dtype="str")
    events[_EVENT_TIME] = pd.Series(dates[rows, which], dtype=object)
    return events


def _constant_column(value: str | float, kind: str, n: int, role: str) -> Column:
    """A role the mapping gives one value for (``constants``), in the role's dtype."""
    if kind == "number":
        try:
            number = float(value)
        except ValueError as exc:
            raise MappingError(f"constants.{role}: {value!r} is not a number") from exc
        return np.full(n, number, dtype="float64")
    return pd.array([str(value)] * n, dtype=text_dtype(n))


def _stages_from_activities(stage: Column, activity: Column, mapping: Mapping) -> Column:
    """The stage column where the export has one, else the stage the mapping gives the
    event's activity (``activity_stages``); events of other activities stay empty, and
    a prefix then sees the last stage known."""
    table = pd.Series(mapping.activity_stages, dtype="object")
    from_activity = pd.Series(activity, dtype="object").map(table)
    given = pd.Series(stage, dtype="object")
    return pd.array(given.where(given.notna(), from_activity).tolist(),
                    dtype=text_dtype(len(given)))


def _case_level_changes(out: dict[str, Column], kept: np.ndarray, mapping: Mapping,
                        columns: dict[str, str], source: str) -> list[str]:
    """Extra columns declared ``level: case`` that hold several values in one case."""
    names = [name for name, extra in mapping.extra_columns.items()
             if extra.level == "case" and name in columns]
    if not names or not kept.any():
        return []
    frame = pd.DataFrame({"case_id": np.asarray(out["case_id"], dtype=object)[kept],
                          **{name: np.asarray(out[name], dtype=object)[kept] for name in names}})
    distinct = frame.groupby("case_id", sort=False)[names].nunique()
    notes = []
    for name in names:
        changing = distinct.index[distinct[name] > 1]
        if len(changing):
            notes.append(
                f"{source}: extra column {name!r} is declared level: case but holds several "
                f"values in {len(changing):,} case(s) (e.g. {changing[0]!r}); each prefix "
                "reads the last value known at its end: declare it level: event if it "
                "changes on purpose")
    return notes


def _number_column(raw: pd.DataFrame, column: str, mapping: Mapping, flag: Any) -> np.ndarray:
    """A numeric column, quarantining text that is not a number and infinities (a
    spreadsheet's #DIV/0! exported as inf, or 1e999): no model can use them."""
    numbers, bad = _parse_numbers(raw[column], mapping)
    flag(bad, "unparseable_number", column, None, "not a number")
    infinite = np.isinf(numbers)
    if infinite.any():
        flag(infinite, "non_finite_number", column, None, "not a finite number")
    return numbers


def _day_micros(day: Any, days_after: int, unbounded: int) -> int:
    """Microseconds at the start of ``day`` + ``days_after`` (UTC); ``unbounded`` for none."""
    if day is None:
        return unbounded
    return int(pd.Timestamp(day).tz_localize("UTC").value // 1000) + days_after * 86_400_000_000


def _add_unreadable_rows(quarantine: pd.DataFrame, unreadable: pd.DataFrame,
                         report: ValidationReport, source: str) -> pd.DataFrame:
    """Rows the reader could not split into fields join the quarantine and the books."""
    report.rows_in += len(unreadable)
    for why, group in unreadable.groupby("reason", sort=False):
        report.note(str(why), [f"{source}: {d}" for d in group["detail"].head(
            _EXAMPLES_PER_REASON)], len(group))
    rows = pd.DataFrame({"quarantine_reason": unreadable["reason"].astype("str"),
                         "quarantine_detail": unreadable["detail"].astype("str"),
                         ROW_COLUMN: unreadable[ROW_COLUMN].to_numpy()})
    both = pd.concat([quarantine, rows], ignore_index=True) if len(quarantine) else rows
    return both.sort_values(ROW_COLUMN, kind="stable").reset_index(drop=True)


_TIME_REASONS = ("empty_timestamp", "unparseable_timestamp", "implausible_timestamp",
                 "ambiguous_local_time", "nonexistent_local_time")
_DATE_FIELDS = r"^\s*(\d{1,4})[./-](\d{1,2})[./-](\d{1,4})"
_EPOCH_CHECK_FROM = pd.Timestamp("1990-01-01", tz="UTC").value // 1000


def _check_times_of_the_whole_log(raw_times: pd.Series, rows: np.ndarray, micros: np.ndarray,
                                  kept: np.ndarray, report: ValidationReport,
                                  fmt: FileFormat, source: str) -> None:
    """What no single row shows: day and month read the wrong way round, too many rows
    without a usable time, suspicious but possible dates. Errors refuse the log."""
    textual = raw_times.dtype == object or pd.api.types.is_string_dtype(raw_times.dtype)
    directives = re.findall(r"%[dmYy]", fmt.timestamp_format)
    if textual and "%d" in directives and "%m" in directives and len(directives) == 3:
        _check_day_month_order(_as_text(raw_times), directives, rows, report, fmt, source)
    unusable = sum(report.quarantined[r] for r in _TIME_REASONS)
    share = unusable / max(len(raw_times), 1)
    if share > fmt.max_unusable_timestamps:
        by_reason = ", ".join(f"{r}: {report.quarantined[r]:,}" for r in _TIME_REASONS
                              if report.quarantined[r])
        report.errors.append(
            f"{source}: {unusable:,} of {len(raw_times):,} rows ({share:.0%}) have no usable "
            f"time ({by_reason}), more than format.max_unusable_timestamps "
            f"({fmt.max_unusable_timestamps:.0%}): check format.timestamp_format "
            f"({fmt.timestamp_format}) and format.timezone against the examples")
    good = micros[kept]
    if not len(good):
        return
    suspicious = {
        "at exactly 1970-01-01 00:00 UTC (epoch zero: an empty date read as 0?)": good == 0,
        "before 1990": (good < _EPOCH_CHECK_FROM) & (good != 0),
        "in the future (after today)": good > pd.Timestamp.now("UTC").value // 1000
        + 86_400_000_000,
    }
    for what, mask in suspicious.items():
        if mask.any():
            at = np.flatnonzero(kept)[np.flatnonzero(mask)[:3]]
            shown = ", ".join(f"row {int(rows[i])}: {v}" for i, v in zip(
                at, _quoted(raw_times.iloc[at]), strict=True))
            report.notes.append(
                f"{source}: {int(mask.sum()):,} event(s) {what}, kept ({shown}); bound the "
                "plausible range with format.earliest_plausible / latest_plausible")


def _check_day_month_order(text: ExtensionArray, directives: list[str], rows: np.ndarray,
                           report: ValidationReport, fmt: FileFormat, source: str) -> None:
    """Dates such as 03/04/2024 read either way; those with a field above 12 do not.
    Rows that only make sense the other way round, or a mix of both kinds, mean that
    the rows which cannot tell (both fields up to 12) were read at random: refuse.
    ``directives``: the format's %d, %m and %Y/%y in their order."""
    fields = pd.Series(text).str.extract(_DATE_FIELDS).apply(pd.to_numeric).to_numpy(
        dtype="float64")
    day = fields[:, directives.index("%d")]
    month = fields[:, directives.index("%m")]
    as_mapped = (day > 12) & (day <= 31) & (month <= 12)
    other_way = (month > 12) & (month <= 31) & (day <= 12)
    undecided = (day <= 12) & (month <= 12)
    swapped = fmt.timestamp_format.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")

    def examples(mask: np.ndarray) -> str:
        at = np.flatnonzero(mask)[:3]
        return ", ".join(f"row {int(rows[i])}: {text[i]!r}" for i in at)

    if other_way.any():
        if as_mapped.any():
            report.errors.append(
                f"{source}: the dates mix two day/month orders: {int(as_mapped.sum()):,} "
                f"row(s) only read as {fmt.timestamp_format} ({examples(as_mapped)}), "
                f"{int(other_way.sum()):,} only as {swapped} ({examples(other_way)}); the "
                f"{int(undecided.sum()):,} row(s) with both fields up to 12 cannot be told "
                "apart. Export the dates in one order (ISO 8601 is safest)")
        else:
            report.errors.append(
                f"{source}: {int(other_way.sum()):,} date(s) only make sense with day and "
                f"month the other way round ({examples(other_way)}) and none as the mapping "
                f"reads them: the {int(undecided.sum()):,} date(s) with both fields up to 12 "
                f"would be read swapped. Set format.timestamp_format to {swapped!r}")
    elif undecided.any() and not as_mapped.any():
        report.notes.append(
            f"{source}: every date has day and month up to 12, so their order cannot be "
            f"checked from the data; read as {fmt.timestamp_format}, as the mapping says")


_EMPTY_QUARANTINES: dict[tuple[tuple[str, ...], tuple[str, ...]], pd.DataFrame] = {}


def _empty_quarantine(raw: pd.DataFrame) -> pd.DataFrame:
    """No row quarantined: the quarantine's columns and dtypes, no rows, built once per
    layout (building it is a large share of reading a small log). Keyed by the dtypes'
    repr, which tells category orders apart; callers copy it, so none can change the
    cached frame."""
    dtypes = raw.dtypes.tolist()
    key = (tuple(raw.columns), tuple(map(repr, dtypes)))
    if key not in _EMPTY_QUARANTINES:
        if len(_EMPTY_QUARANTINES) > 64:
            _EMPTY_QUARANTINES.clear()
        _EMPTY_QUARANTINES[key] = pd.DataFrame({
            "quarantine_reason": pd.array([], dtype="str"),
            "quarantine_detail": pd.array([], dtype="str"),
            **{c: pd.Series([], dtype=d) for c, d in zip(raw.columns, dtypes, strict=True)}})
    return _EMPTY_QUARANTINES[key]


def _translate_activities(exported: ExtensionArray, mapping: Mapping) -> ExtensionArray:
    if not mapping.activities:
        return exported
    n = len(exported)
    if n <= SMALL_FRAME_ROWS:
        return pd.array(small.renamed(exported.tolist(), mapping.activities),
                        dtype=text_dtype(n))
    given = pd.Series(exported)
    translated = given.map(mapping.activities)
    return translated.fillna(given).astype(text_dtype(n)).mask(given.isna()).array


def _unknown_activities(activity: ExtensionArray, mapping: Mapping) -> np.ndarray:
    """Given activities the mapping does not list."""
    if len(activity) <= SMALL_FRAME_ROWS:
        return small.not_in(activity.tolist(), set(mapping.known_activities))
    return ~activity.isna() & ~activity.isin(list(mapping.known_activities))


def _year_start_micros(year: int) -> int:
    return int(pd.Timestamp(year=year, month=1, day=1).value // 1000)


def _may_hold_duplicates(raw: pd.DataFrame, key_columns: list[str], usable: np.ndarray) -> bool:
    """Whether two usable rows of a small frame agree on the file's case, activity and
    time columns, as exact duplicates must: on a small table this usually spares pandas'
    search. Usable rows hold no missing key."""
    keys = []
    for column in dict.fromkeys(key_columns):
        values = raw[column].array[usable]
        keys.append(values.asi8.tolist() if hasattr(values, "asi8") else values.tolist())
    return small.any_repeated(keys)


def _flag_duplicates(raw: pd.DataFrame, usable: np.ndarray, reason: np.ndarray,
                     detail: np.ndarray, report: ValidationReport, source: str) -> None:
    """Exact duplicates (every column of the file equal) keep their first row only.

    Judged on the file's own columns, not the mapped ones: two partial payments on one
    day differ in an unmapped amount column and are both real.
    """
    content = [c for c in raw.columns if c != ROW_COLUMN]
    candidates = raw[usable]
    dup = candidates.duplicated(subset=content, keep="first")
    dup_index = candidates.index[dup]
    if len(dup_index) == 0:
        return
    first_row = candidates.groupby(content, dropna=False, sort=False)[ROW_COLUMN].transform("first")
    reason[dup_index] = "duplicate_event"
    detail[dup_index] = [f"exact duplicate of row {r}" for r in first_row[dup].tolist()]
    rows = raw.loc[dup_index, ROW_COLUMN]
    messages = [f"{source}: row {int(r)}: exact duplicate of row {int(f)}"
                for r, f in zip(rows.iloc[:_EXAMPLES_PER_REASON],
                                first_row[dup].iloc[:_EXAMPLES_PER_REASON], strict=True)]
    report.note("duplicate_event", messages, len(dup_index))


def _flag_after_case_end(events: dict[str, Column], reason: np.ndarray,
                         detail: np.ndarray, report: ValidationReport, source: str,
                         mapping: Mapping) -> None:
    """Events strictly later than a case's first end event cannot belong to that case
    (``events``: the canonical columns, before they become a frame)."""
    ends = mapping.roles.end_activities
    live = np.flatnonzero(pd.isna(reason))  # rows still usable
    is_end = np.isin(np.asarray(events["activity"])[live], ends) if ends else None
    if is_end is None or not is_end.any():
        return
    # each live row against its case's first end time, in numpy (any row order)
    case, _ = pd.factorize(np.asarray(events["case_id"])[live])
    micros = epoch_micros(events["timestamp"])[live]
    case_end = np.full(case.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(case_end, case[is_end], micros[is_end])
    late = micros > case_end[case]
    if not late.any():
        return
    after = live[late]
    ended = pd.Series(pd.to_datetime(case_end[case[late]], unit="us", utc=True)).dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    reason[after] = "event_after_case_end"
    detail[after] = [f"after the case's end event at {e}" for e in ended.tolist()]
    rows = events[ROW_COLUMN][after]
    messages = [f"{source}: row {int(r)}: event after its case's end event at {e}"
                for r, e in zip(rows[:_EXAMPLES_PER_REASON],
                                ended.iloc[:_EXAMPLES_PER_REASON], strict=True)]
    report.note("event_after_case_end", messages, len(after))


def read_log(path: str | Path, mapping: Mapping | str | Path | None = None, *,
             refuse_errors: bool = True) -> EventLog:
    """Read any supported file through a mapping (the simulator's by default).

    A log whose report holds errors (day and month mixed up, too many rows without a
    usable time) is refused with ``LogRefusedError``, which carries the log so a caller
    that only reports (``l2c validate``) can still show what was read.
    """
    if mapping is None:
        mapping = default_mapping()
    elif not isinstance(mapping, Mapping):
        mapping = Mapping.load(mapping)
    raw = read_raw(path, mapping.format)
    if raw.empty and not len(raw.attrs.get(UNREADABLE_ROWS, ())):
        raise EventLogError(f"{path}: the file holds no events")
    log = canonicalize(raw, mapping, source=str(path))
    if refuse_errors and log.report.errors:
        raise LogRefusedError(log)
    return log


def quarantine_path(output: str | Path) -> Path:
    """Where the quarantine of a log goes: beside it, with a recognisable name."""
    return sidecar_path(output, "quarantine")


def export_frame(events: pd.DataFrame, mapping: Mapping) -> pd.DataFrame:
    """Canonical events written back in the export's own column and activity names.

    The inverse of the mapping, for input examples and for tests: what a client of a
    model trained through this mapping sends.
    """
    out = {}
    for role, ref in mapping.columns.items():
        column = ref if isinstance(ref, str) else ref[0]
        if role == "payment_terms_days" or role not in events.columns:
            continue
        values = events[role]
        if role == "timestamp":
            values = values.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif role == "activity" and mapping.activities:
            back = {canonical: exported for exported, canonical in mapping.activities.items()}
            values = values.map(back).fillna(values)
        out[column] = values
    for name, extra in mapping.extra_columns.items():
        if name in events.columns:
            out[extra.column if isinstance(extra.column, str) else extra.column[0]] = events[name]
    return pd.DataFrame(out).reset_index(drop=True)
