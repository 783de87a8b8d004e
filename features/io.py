"""Reading and writing event log files: CSV, Parquet, Excel and XES (plain or gzip).

Readers return the file's own columns untouched (text stays text) plus the source
row number, so the mapping step can report any bad value with its row. Writers exist
so the simulator, the tests and the data template produce the formats users send.
"""

from __future__ import annotations

import csv
import errno
import gzip
import io
import math
import zipfile
import zlib
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
    """The file's rows as they are, plus ``source_row`` (1 = the first data row).

    Rows the format itself cannot hold together (a CSV line with too many fields or an
    unbalanced quote) are not read as events: they ride along in
    ``frame.attrs[UNREADABLE_ROWS]`` so that the mapping step quarantines them with
    their line, and the books still balance.
    """
    path = Path(path)
    _check_is_a_file(path)
    if path.stat().st_size == 0:
        raise EventLogError(f"{path}: the file is empty (0 bytes)")
    return _read_source(path, str(path), file_format or FileFormat())


def read_upload(name: str, data: bytes, file_format: FileFormat | None = None) -> pd.DataFrame:
    """An uploaded file's rows, read exactly as the same file on disk would be."""
    if not data:
        raise EventLogError(f"{name}: the file is empty (0 bytes)")
    return _read_source(io.BytesIO(data), name, file_format or FileFormat())


def _check_is_a_file(path: Path) -> None:
    """Say what the path is when it is not a readable file, not just "no such file"."""
    try:
        path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: Python 3.11's symlink loop
        if path.is_symlink():
            looping = isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP
            what = "a symbolic link that loops" if looping else "a broken symbolic link"
            raise EventLogError(f"{path}: is {what}, not a log file") from exc
        raise EventLogError(f"{path}: no such file") from exc
    if path.is_dir():
        raise EventLogError(f"{path}: is a directory, not a log file; name one file in it")
    if not path.is_file():
        raise EventLogError(f"{path}: is not a regular file (a device, socket or pipe?)")


def _read_source(source: Path | IO[bytes], name: str, fmt: FileFormat) -> pd.DataFrame:
    """Read with the format's reader; every way a file can be damaged becomes one
    ``EventLogError`` that says what the file is, never a library's traceback."""
    kind = detect_format(name)
    try:
        if kind == "csv":
            frame = _read_csv(source, name, fmt)
        elif kind == "parquet":
            frame = pd.read_parquet(source)
        elif kind == "xlsx":
            frame = read_xlsx(source, name, fmt.sheet)
        else:
            frame = read_xes(source, name)
    except EventLogError:
        raise
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise EventLogError(f"{name}: is named as gzip-compressed but is not a valid gzip "
                            f"file ({exc}); rename it or compress it again") from exc
    except EOFError as exc:
        raise _truncated(name) from exc
    except zipfile.BadZipFile as exc:
        raise EventLogError(f"{name}: is not a readable Excel workbook: an .xlsx file is a "
                            f"zip archive and this one is damaged or truncated ({exc})") from exc
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        # pyarrow's ArrowInvalid is a ValueError; openpyxl raises KeyError/TypeError on
        # damaged parts. Each is a file we cannot read, said with the library's reason.
        raise EventLogError(f"{name}: cannot be read as {_KIND_NAMES[kind]} "
                            f"({type(exc).__name__}: {exc})") from exc
    _refuse_duplicate_columns(frame.columns, name)
    if not frame.attrs.get(_NUMBERED):  # the reader did not number rows by their line
        attrs = dict(frame.attrs)
        frame = frame.reset_index(drop=True)
        frame[ROW_COLUMN] = np.arange(1, len(frame) + 1, dtype="int64")
        frame.attrs.update(attrs)
    frame.attrs.pop(_NUMBERED, None)
    return frame


def _truncated(name: str) -> EventLogError:
    """A compressed file cut short (gzip's EOFError), for every reader alike."""
    return EventLogError(f"{name}: ends too early: the compressed file is truncated "
                         "(an interrupted download or copy?)")


_KIND_NAMES = {"csv": "CSV", "parquet": "Parquet", "xlsx": "an Excel workbook (.xlsx)",
               "xes": "XES"}

#: ``frame.attrs`` key: rows the reader could not split into fields (source_row, reason,
#: detail), to be quarantined by the mapping step.
UNREADABLE_ROWS = "l2c_unreadable_rows"
#: ``frame.attrs`` key: notes of the reader a user should see (values kept as text ...).
READER_WARNINGS = "l2c_reader_warnings"
_NUMBERED = "l2c_rows_numbered"  # the reader set ROW_COLUMN from the file's own lines
#: ``frame.attrs`` key: column -> (source rows, formula) of Excel formula cells that were
#: never calculated, so have no value to read.
UNCALCULATED_FORMULAS = "l2c_uncalculated_formulas"


def _refuse_duplicate_columns(columns: pd.Index | list[str], name: str) -> None:
    """Two columns of one name: which is the activity? Refuse rather than pick one."""
    seen: dict[str, int] = {}
    for position, column in enumerate(map(str, columns), start=1):
        if column in seen:
            raise EventLogError(
                f"{name}: columns {seen[column]} and {position} are both named {column!r}; "
                "rename one of them so the mapping can tell them apart")
        seen[column] = position


def _read_csv(source: Path | IO[bytes], name: str, fmt: FileFormat) -> pd.DataFrame:
    """All columns as text: numbers and dates are parsed later, where errors get a row.

    pandas' C parser reads a well-formed file; only when it finds a malformed line is
    the file read again line by line, so a few bad lines cost only themselves.
    """
    data = source.read_bytes() if isinstance(source, Path) else source.read()
    if data[:2] == b"\x1f\x8b":  # by content: a plain file named .gz reads as it is
        data = gzip.decompress(data)
    if not data.strip():
        raise EventLogError(f"{name}: the file holds no header and no rows")
    try:
        # utf-8-sig: a byte-order mark would otherwise stick to the first column's name
        text = data.decode("utf-8-sig" if fmt.encoding.lower().replace("_", "-") in (
            "utf-8", "utf8") else fmt.encoding)
    except UnicodeDecodeError as exc:
        raise EventLogError(
            f"{name}: not readable as {fmt.encoding} ({exc.reason} at byte {exc.start}); "
            "set format.encoding in the mapping (e.g. latin-1, cp1252)"
        ) from exc
    except LookupError as exc:
        raise EventLogError(f"{name}: format.encoding {fmt.encoding!r} is not an encoding "
                            "Python knows (e.g. utf-8, latin-1, cp1252)") from exc
    _refuse_duplicate_columns(_csv_header(text, fmt.separator), name)
    try:
        return pd.read_csv(io.StringIO(text), sep=fmt.separator, dtype=str,
                           keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError as exc:
        raise EventLogError(f"{name}: the file holds no header and no rows") from exc
    except pd.errors.ParserError:
        return _read_csv_line_by_line(text, name, fmt.separator)


def _csv_header(text: str, separator: str) -> list[str]:
    first = next(csv.reader(io.StringIO(text), delimiter=separator), [])
    return [cell.strip() for cell in first]


def _read_csv_line_by_line(text: str, name: str, separator: str) -> pd.DataFrame:
    """The rows pandas' parser refused the file for, set apart; the rest read as usual.

    A row with more fields than the header, or a quote that never closes (which would
    swallow every line after it into one field), is set apart with its line number;
    reading resumes on the next line. Rows are numbered by their line (row 1 = line 2),
    as pandas numbers them in a file without line breaks inside fields.
    """
    lines = text.splitlines(keepends=True)
    header = next(csv.reader(lines[:1], delimiter=separator))
    width = len(header)
    kept: list[list[str]] = []
    kept_rows: list[int] = []
    bad: list[tuple[int, str, str]] = []
    start = 1  # index in ``lines`` where the reader (re)starts
    while start < len(lines):
        reader = csv.reader(lines[start:], delimiter=separator, strict=True)
        consumed = 0
        try:
            for record in reader:
                first, consumed = start + consumed, reader.line_num
                if not record:
                    continue  # a blank line, skipped as pandas skips it
                if len(record) <= width:
                    kept.append(record + [""] * (width - len(record)))
                    kept_rows.append(first)
                    continue
                bad.append((first, f"{len(record)} fields where the header has {width}",
                            lines[first]))
                if start + consumed - 1 > first:  # a quote ran over several lines:
                    start = first + 1             # only its first line is bad
                    break
            else:
                start = len(lines)
        except csv.Error as exc:  # a quote still open at the end of the file
            first = start + consumed
            bad.append((first, f"unbalanced quote ({exc})", lines[first]))
            start = first + 1
    frame = pd.DataFrame(kept, columns=header, dtype=str).replace("", np.nan)
    frame[ROW_COLUMN] = np.asarray(kept_rows, dtype="int64")
    frame.attrs[_NUMBERED] = True
    frame.attrs[UNREADABLE_ROWS] = pd.DataFrame({
        ROW_COLUMN: np.asarray([b[0] for b in bad], dtype="int64"),
        "reason": "malformed_csv_line",
        "detail": [f"line {row + 1}: {why}: {line.rstrip()[:200]!r}" for row, why, line in bad],
    })
    return frame


def read_xlsx(source: Path | IO[bytes], name: str, sheet: str | int) -> pd.DataFrame:
    """An Excel sheet as the spreadsheet shows it: formulas read as their saved values.

    A formula in a workbook never opened by a spreadsheet program (written by a script)
    has no saved value; pandas would read it as an empty cell. Such cells are listed in
    ``frame.attrs[UNCALCULATED_FORMULAS]`` so the mapping step can quarantine the rows
    whose mapped cells they are, instead of reading them as missing.
    """
    values = _sheet_rows(source, name, sheet, data_only=True)
    if not values:
        raise EventLogError(f"{name}: sheet {sheet!r} holds no header and no rows")
    header = [f"Unnamed: {i}" if h is None else str(h).strip() for i, h in enumerate(values[0])]
    width = len(header)
    body = [tuple(row) + (None,) * (width - len(row)) for row in values[1:]]
    cells = np.empty((len(body), width), dtype=object)
    cells[:] = body if body else np.empty((0, width), dtype=object)
    rows = np.arange(1, len(body) + 1, dtype="int64")
    missing = pd.isna(cells)
    blank = missing.all(axis=1)
    formulas: dict[str, tuple[np.ndarray, list[str]]] = {}
    if missing.any():
        if hasattr(source, "seek"):
            source.seek(0)
        written = _sheet_rows(source, name, sheet, data_only=False)[1:]
        raw = np.empty((len(body), width), dtype=object)
        raw[:] = [tuple(r)[:width] + (None,) * (width - len(r)) for r in written] or raw
        is_formula = np.zeros_like(missing)
        is_formula[missing] = [isinstance(v, str) and v.startswith("=") for v in raw[missing]]
        blank &= ~is_formula.any(axis=1)
        for j in np.flatnonzero(is_formula.any(axis=0)):
            at = np.flatnonzero(is_formula[:, j])
            formulas[header[j]] = (rows[at], raw[at, j].tolist())
    frame = pd.DataFrame(cells[~blank], columns=header).infer_objects()
    frame[ROW_COLUMN] = rows[~blank]
    frame.attrs[_NUMBERED] = True
    if formulas:
        frame.attrs[UNCALCULATED_FORMULAS] = formulas
    return frame


def _sheet_rows(source: Path | IO[bytes], name: str, sheet: str | int,
                data_only: bool) -> list[tuple[object, ...]]:
    import openpyxl

    book = openpyxl.load_workbook(source, read_only=True, data_only=data_only)
    try:
        names = book.sheetnames
        if isinstance(sheet, int):
            if not 0 <= sheet < len(names):
                raise EventLogError(f"{name}: has no sheet number {sheet} (sheets, counted "
                                    f"from 0: {names}); set format.sheet in the mapping")
            chosen = book[names[sheet]]
        elif sheet in names:
            chosen = book[sheet]
        else:
            raise EventLogError(f"{name}: has no sheet {sheet!r} (sheets: {names}); set "
                                "format.sheet in the mapping")
        return list(chosen.iter_rows(values_only=True))
    finally:
        book.close()


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
    """The value in its declared XES type; ValueError when it is not of that type."""
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "boolean":
        if value.lower() not in ("true", "false"):
            raise ValueError(value)
        return value.lower() == "true"
    return value


def _iter_xes_events(handle: IO[bytes],
                     mistyped: list[str]) -> Iterator[dict[str, object]]:
    """Yield one flat dict per event; trace attributes appear as ``case:<key>``.

    Streams with ``iterparse`` and clears finished elements so memory stays flat on
    large logs. Nested (list/container) attributes are skipped: they carry no role.
    A value that is not of its declared type (``<int value="n/a">``) is kept as its
    text, and where it stands is added to ``mistyped``: one bad attribute must not
    refuse the whole log, and a mapped column then quarantines just that event.
    """
    trace_attrs: dict[str, object] = {}
    event: dict[str, object] | None = None
    depth_in_attr = 0
    traces = events_in_trace = 0
    for action, elem in iterparse(handle, events=("start", "end")):
        tag = _local(elem.tag)
        if action == "start":
            if tag == "trace":
                trace_attrs = {}
                traces += 1
                events_in_trace = 0
            elif tag == "event":
                event = {}
                events_in_trace += 1
            elif tag in _XES_TYPES or tag in ("list", "container"):
                depth_in_attr += 1
            continue
        if tag in _XES_TYPES or tag in ("list", "container"):
            depth_in_attr -= 1
            if depth_in_attr == 0 and tag in _XES_TYPES:
                key = elem.get("key")
                text = elem.get("value")
                try:
                    value = _typed(tag, text)
                except ValueError:
                    value = text
                    where = (f"trace {traces}, event {events_in_trace}" if event is not None
                             else f"trace {traces}")
                    mistyped.append(f"{where}, attribute {key!r}: <{tag}> value {text!r} is "
                                    f"not a{'n' if tag == 'int' else ''} {tag}; kept as text")
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
    mistyped: list[str] = []
    with _open_maybe_gzip(source) as handle:
        try:
            rows = list(_iter_xes_events(handle, mistyped))
        except EOFError as exc:
            raise _truncated(name) from exc
        except Exception as exc:  # ElementTree raises ParseError (with line and column)
            raise EventLogError(f"{name}: not a readable XES file: {exc}") from exc
    frame = pd.DataFrame.from_records(rows)
    if mistyped:
        shown = "; ".join(mistyped[:5])
        more = f" (and {len(mistyped) - 5} more)" if len(mistyped) > 5 else ""
        frame.attrs[READER_WARNINGS] = [
            f"{name}: {len(mistyped)} XES attribute value(s) not of their declared type, "
            f"kept as text (a mapped number or time among them is quarantined with its row): "
            f"{shown}{more}"]
    return frame


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
#: a text cell starting with one of these is run as a formula by spreadsheet programs
#: (``=HYPERLINK(...)``, ``=cmd|...``, ``@SUM(...)``); tab and carriage return too
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells a spreadsheet would execute start with a quote (').

    Quarantined rows are exactly the cells nobody checked; opened in Excel, a cell
    such as ``=HYPERLINK("http://...")`` would run. Numbers written as text ("-12.5")
    are left alone: they are data, and a spreadsheet reads them as numbers.
    """
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if not (values.dtype == object or pd.api.types.is_string_dtype(values.dtype)):
            continue
        text = values.astype("str")
        risky = (values.notna() & text.str.startswith(_FORMULA_START)
                 & ~text.str.match(_PLAIN_NUMBER)).to_numpy()
        if risky.any():
            out[column] = values.astype(object).where(~risky, "'" + text)
    return out


def write_csv_for_people(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a CSV meant to be opened by a person, formulas neutralised."""
    neutralise_formulas(frame).to_csv(path, index=False)


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
