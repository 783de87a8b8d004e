"""Reading and writing event log files: CSV, Parquet, Excel and XES (plain or gzip).

Readers return the file's own columns untouched (text stays text) plus the source
row number, so the mapping step can report any bad value with its row. Writers exist
so the simulator, the tests and the data template produce the formats users send.
"""

from __future__ import annotations

import gzip
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal
from xml.etree.ElementTree import iterparse
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

from features.errors import EventLogError, UnsupportedFormatError
from features.mapping import FileFormat
from features.schema import ROW_COLUMN

Format = Literal["csv", "parquet", "xlsx", "xes"]

_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
    ".xes": "xes",
    ".xes.gz": "xes",
}


def detect_format(path: str | Path) -> Format:
    """The format named by the file's extension (``.xes.gz`` and ``.csv.gz`` included)."""
    name = Path(path).name.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return _SUFFIXES[suffix]
    raise UnsupportedFormatError(
        f"{path}: cannot tell the format from the extension; use one of {sorted(_SUFFIXES)}"
    )


def sidecar_path(log_path: str | Path, kind: str) -> Path:
    """A file beside a log, named after it: ``x.csv`` -> ``x.<kind>.csv``."""
    log_path = Path(log_path)
    name = log_path.name
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return log_path.with_name(f"{name}.{kind}.csv")


def read_raw(path: str | Path, file_format: FileFormat | None = None) -> pd.DataFrame:
    """The file's rows as they are, plus ``source_row`` (1 = the first data row)."""
    path = Path(path)
    if not path.is_file():
        raise EventLogError(f"{path}: no such file")
    return _read_source(path, str(path), file_format or FileFormat())


def read_upload(name: str, data: bytes, file_format: FileFormat | None = None) -> pd.DataFrame:
    """An uploaded file's rows, read exactly as the same file on disk would be."""
    return _read_source(io.BytesIO(data), name, file_format or FileFormat())


def _read_source(source: Path | IO[bytes], name: str, fmt: FileFormat) -> pd.DataFrame:
    kind = detect_format(name)
    if kind == "csv":
        frame = _read_csv(source, name, fmt)
    elif kind == "parquet":
        frame = pd.read_parquet(source)
    elif kind == "xlsx":
        frame = pd.read_excel(source, sheet_name=fmt.sheet, engine="openpyxl")
    else:
        frame = read_xes(source, name)
    frame = frame.reset_index(drop=True)
    frame[ROW_COLUMN] = np.arange(1, len(frame) + 1, dtype="int64")
    return frame


def _read_csv(source: Path | IO[bytes], name: str, fmt: FileFormat) -> pd.DataFrame:
    """All columns as text: numbers and dates are parsed later, where errors get a row."""
    try:
        return pd.read_csv(
            source,
            sep=fmt.separator,
            encoding=fmt.encoding,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
        )
    except UnicodeDecodeError as exc:
        raise EventLogError(
            f"{name}: not readable as {fmt.encoding} ({exc.reason} at byte {exc.start}); "
            "set format.encoding in the mapping (e.g. latin-1, cp1252)"
        ) from exc
    except pd.errors.ParserError as exc:
        raise EventLogError(
            f"{name}: not a CSV with separator {fmt.separator!r}: {exc}; "
            "set format.separator in the mapping"
        ) from exc


# --------------------------------------------------------------------------- XES
_XES_TYPES = {"string", "date", "int", "float", "boolean", "id"}


def _open_maybe_gzip(source: Path | IO[bytes]) -> IO[bytes]:
    if isinstance(source, Path):
        with source.open("rb") as handle:
            magic = handle.read(2)
        return gzip.open(source, "rb") if magic == b"\x1f\x8b" else source.open("rb")
    magic = source.read(2)
    source.seek(0)
    return gzip.GzipFile(fileobj=source, mode="rb") if magic == b"\x1f\x8b" else source


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _typed(kind: str, value: str | None) -> object:
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "boolean":
        return value.lower() == "true"
    return value


def _iter_xes_events(handle: IO[bytes]) -> Iterator[dict[str, object]]:
    """Yield one flat dict per event; trace attributes appear as ``case:<key>``.

    Streams with ``iterparse`` and clears finished elements so memory stays flat on
    large logs. Nested (list/container) attributes are skipped: they carry no role.
    """
    trace_attrs: dict[str, object] = {}
    event: dict[str, object] | None = None
    depth_in_attr = 0
    for action, elem in iterparse(handle, events=("start", "end")):
        tag = _local(elem.tag)
        if action == "start":
            if tag == "trace":
                trace_attrs = {}
            elif tag == "event":
                event = {}
            elif tag in _XES_TYPES or tag in ("list", "container"):
                depth_in_attr += 1
            continue
        if tag in _XES_TYPES or tag in ("list", "container"):
            depth_in_attr -= 1
            if depth_in_attr == 0 and tag in _XES_TYPES:
                key = elem.get("key")
                value = _typed(tag, elem.get("value"))
                if event is not None:
                    event[key] = value
                elif key is not None:
                    trace_attrs[f"case:{key}"] = value
        elif tag == "event":
            if event is not None:
                yield {**trace_attrs, **event}
            event = None
            elem.clear()
        elif tag == "trace":
            elem.clear()


def read_xes(source: str | Path | IO[bytes], name: str | None = None) -> pd.DataFrame:
    """Flatten an XES (IEEE 1849) log, plain or gzip, to one row per event."""
    source = Path(source) if isinstance(source, str) else source
    name = name or str(source)
    with _open_maybe_gzip(source) as handle:
        try:
            rows = list(_iter_xes_events(handle))
        except Exception as exc:  # ElementTree raises ParseError, gzip OSError/EOFError
            raise EventLogError(f"{name}: not a readable XES file: {exc}") from exc
    return pd.DataFrame.from_records(rows)


def _xes_attr(key: str, value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return f'<date key={quoteattr(key)} value="{value.isoformat()}"/>'
    if isinstance(value, bool | np.bool_):
        return f'<boolean key={quoteattr(key)} value="{str(bool(value)).lower()}"/>'
    if isinstance(value, int | np.integer):
        return f'<int key={quoteattr(key)} value="{int(value)}"/>'
    if isinstance(value, float | np.floating):
        return f'<float key={quoteattr(key)} value="{float(value)!r}"/>'
    return f"<string key={quoteattr(key)} value={quoteattr(str(value))}/>"


def write_xes(
    frame: pd.DataFrame,
    path: str | Path,
    *,
    case_column: str,
    activity_column: str,
    timestamp_column: str,
    resource_column: str | None = None,
) -> None:
    """Write a flat log as XES: attributes constant within every case go on the trace."""
    path = Path(path)
    per_case = frame.groupby(case_column, sort=False, dropna=False)
    standard = {case_column, activity_column, timestamp_column, resource_column}
    others = [c for c in frame.columns if c not in standard]
    constant = per_case[others].nunique(dropna=False).le(1).all() if others else pd.Series()
    case_cols = [c for c in others if bool(constant.get(c, False))]
    event_cols = [c for c in others if c not in case_cols]
    rename = {activity_column: "concept:name", timestamp_column: "time:timestamp"}
    if resource_column:
        rename[resource_column] = "org:resource"
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<log xes.version="1849-2016">\n')
        out.write('<extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>\n')
        out.write('<extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>\n')
        out.write('<extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>\n')
        event_keys = [*rename, *event_cols]
        for case, group in per_case:
            out.write("<trace>")
            out.write(_xes_attr("concept:name", case))
            first = group.iloc[0]
            for col in case_cols:
                out.write(_xes_attr(col, first[col]))
            out.write("\n")
            for values in group[event_keys].itertuples(index=False, name=None):
                attrs = "".join(
                    _xes_attr(rename.get(k, k), v) for k, v in zip(event_keys, values, strict=True)
                )
                out.write(f"<event>{attrs}</event>\n")
            out.write("</trace>\n")
        out.write("</log>\n")


# ------------------------------------------------------------------------ writers
def write_frame(frame: pd.DataFrame, path: str | Path, **xes_columns: str) -> Format:
    """Write a flat frame in the format named by the extension.

    Excel cannot hold time zones: timestamps are written as naive UTC, which the
    default mapping (``timezone: UTC``) reads back unchanged.
    """
    path = Path(path)
    kind = detect_format(path)
    if kind == "csv":
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
    elif kind == "parquet":
        frame.to_parquet(path, index=False)
    elif kind == "xlsx":
        naive = frame.copy()
        for col in naive.columns:
            if isinstance(naive[col].dtype, pd.DatetimeTZDtype):
                naive[col] = naive[col].dt.tz_convert("UTC").dt.tz_localize(None)
        naive.to_excel(path, index=False, sheet_name="events", engine="openpyxl")
    else:
        write_xes(frame, path, **xes_columns)
    return kind
