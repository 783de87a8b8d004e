"""A log larger than one machine, read into partitions of whole cases, with its books.

The input is a directory of Parquet files, one Parquet file, or one large CSV read in
blocks (other formats are read and validated by the driver, then partitioned); every
row is numbered in file order first (the number the quarantine and the messages
quote, as ``read_log`` numbers it). Rows are then shuffled by the file's case
column so that each partition holds whole cases, sorted back into file order, and
``features.log.canonicalize`` runs on each partition: the same mapping, the same
checks. Exact duplicates and events after a case's end are judged within a case, so
per partition they find what the whole log would. The reports are summed: rows in =
kept + quarantined over all partitions, as for one file.

Checks of the whole log's times (day and month mixed up, too many rows without a
usable time) run per partition, each a random share of the cases; their findings are
listed once each.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import EventLogError, LogRefusedError
from features.io import detect_format
from features.log import ValidationReport, canonicalize, read_log
from features.mapping import Mapping, default_mapping, resolve_columns
from features.schema import ROW_COLUMN

_EXAMPLES_PER_REASON = 5


@dataclass(frozen=True)
class StoredPart:
    """A partition's canonical events kept in a Parquet file instead of worker memory
    (``read_partitioned(store=...)``): a worker then holds one partition at a time."""

    path: str
    rows: int


def load(part: pd.DataFrame | StoredPart) -> pd.DataFrame:
    """A partition's events, read back if stored."""
    return pd.read_parquet(part.path) if isinstance(part, StoredPart) else part


class OnEvents:
    """``fn`` with its ``at``-th argument (a partition) loaded first; picklable."""

    def __init__(self, fn: Any, at: int = 0) -> None:
        self.fn, self.at = fn, at

    def __call__(self, *args: Any) -> Any:
        args = list(args)
        args[self.at] = load(args[self.at])
        return self.fn(*args)
#: rows per partition aimed at after the shuffle by case (a few hundred MB of events)
ROWS_PER_PARTITION = 500_000


@dataclass
class PartitionedLog:
    """Canonical events as futures on the cluster, one partition of whole cases each,
    with the quarantine (also as futures) and the summed report."""

    client: Any
    parts: list[Any]
    quarantine: list[Any]
    report: ValidationReport
    mapping: Mapping
    source: str
    sha256: str
    part_rows: list[int] = field(default_factory=list)
    store: str | None = None  # where partitions (and the key join's pieces) are kept

    def map_each(self, fn: Any, per_part: list[Any], *args: Any, at: int = 0) -> list[Any]:
        """Like ``map``, with one more argument per partition (``per_part[i]``, e.g. a
        future of that partition's own slice of something) right after the events."""
        wrapped = OnEvents(fn, at)
        return [self.client.submit(wrapped, *args[:at], part, own, *args[at:])
                for part, own in zip(self.parts, per_part, strict=True)]

    def map(self, fn: Any, *args: Any, at: int = 0) -> list[Any]:
        """Futures of ``fn`` on every partition's events (the ``at``-th argument; the
        others are ``args``, e.g. futures of scattered objects)."""
        wrapped = OnEvents(fn, at)
        return [self.client.submit(wrapped, *args[:at], part, *args[at:])
                for part in self.parts]

    def events(self) -> pd.DataFrame:
        """Every partition's events in one frame, partition after partition: for small
        logs and tests (it brings the whole log to this process)."""
        frames = [f for f in map(load, self.client.gather(self.parts)) if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def quarantined_rows(self) -> pd.DataFrame:
        """The quarantine of every partition, in file order (brought to this process)."""
        frames = [f for f in self.client.gather(self.quarantine) if len(f)]
        if not frames:
            return pd.DataFrame()
        both = pd.concat(frames, ignore_index=True)
        return both.sort_values(ROW_COLUMN, kind="stable").reset_index(drop=True)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".parquet" and p.is_file())
        if not files:
            raise EventLogError(f"{path}: a directory without .parquet files; give a "
                                "directory of Parquet files, a Parquet file or a CSV file")
        return files
    if not path.is_file():
        raise EventLogError(f"{path}: no such file or directory")
    return [path]


def content_sha256(path: str | Path) -> str:
    """SHA-256 of the file, or of a directory's Parquet files in name order (each
    file's name and bytes), so a training run names exactly what it read."""
    digest = hashlib.sha256()
    path = Path(path)
    for file in _files(path):
        if path.is_dir():
            digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _raw_frame(path: Path, mapping: Mapping, blocksize: str | int) -> Any:
    """The raw rows as a Dask frame, text as text (parsing happens in canonicalize)."""
    import dask.dataframe as dd

    fmt = mapping.format
    try:
        if path.is_dir() or detect_format(path.name) == "parquet":
            files = [str(p) for p in _files(path)]
            return dd.read_parquet(files)
        # a byte-order mark would stick to the first column's name (as read_log avoids)
        encoding = ("utf-8-sig" if fmt.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
                    else fmt.encoding)
        return dd.read_csv(str(path), blocksize=blocksize, sep=fmt.separator, dtype=object,
                           keep_default_na=False, na_values=[""], encoding=encoding)
    except (OSError, ValueError) as exc:
        raise EventLogError(f"{path}: cannot be read in blocks ({type(exc).__name__}: "
                            f"{exc})") from exc


def _numbered(frame: pd.DataFrame, first: int) -> pd.DataFrame:
    out = frame.reset_index(drop=True)
    out[ROW_COLUMN] = np.arange(first, first + len(out), dtype="int64")
    return out


def _canonical_part(raw: pd.DataFrame, mapping: Mapping, source: str, store: str | None
                    ) -> tuple[pd.DataFrame | StoredPart, pd.DataFrame, ValidationReport]:
    """One partition of whole cases through the mapping, rows back in file order (an
    exact duplicate keeps its first row, as for the whole file); its events written to
    ``store`` when given."""
    raw = raw.sort_values(ROW_COLUMN, kind="stable").reset_index(drop=True)
    for column in raw.columns:  # Dask's Arrow strings back to the text the reader gives
        if column != ROW_COLUMN and pd.api.types.is_string_dtype(raw[column].dtype):
            raw[column] = raw[column].astype(object)
    log = canonicalize(raw, mapping, source=source)
    if store is None:
        return log.events, log.quarantine, log.report
    path = Path(store) / f"events-{uuid.uuid4().hex}.parquet"
    log.events.to_parquet(path, index=False)
    return StoredPart(str(path), len(log.events)), log.quarantine, log.report


def read_partitioned(path: str | Path, client: Any, mapping: Mapping | str | Path | None = None,
                     *, partitions: int | None = None, blocksize: str | int = "64MB",
                     refuse_errors: bool = True, store: str | Path | None = None
                     ) -> PartitionedLog:
    """Read, number, shuffle by case and canonicalise a log on the cluster.

    ``partitions``: how many partitions of cases (default: about ``ROWS_PER_PARTITION``
    rows each, at least one per worker thread). ``store``: a directory every worker can
    read and write (local disk for a LocalCluster, a shared file system otherwise) to
    keep the canonical partitions in, so that a worker's memory holds the partition it
    works on, not all of its share of the log.
    """
    import dask

    from scaleout.workers import prepare_workers

    prepare_workers(client)  # Arrow's allocator on every worker, before the first read
    if mapping is None:
        mapping = default_mapping()
    elif not isinstance(mapping, Mapping):
        mapping = Mapping.load(mapping)
    path = Path(path)
    source = str(path)
    if not path.is_dir() and (detect_format(path.name) not in ("csv", "parquet")
                              or path.name.endswith(".gz")):
        # XES, Excel, gzip: not splittable; read and validated here exactly as read_log
        # does (the reader's own row numbers and unreadable rows kept), then partitioned
        single = read_log(path, mapping, refuse_errors=False)
        log = scatter_events(client, single.events, mapping,
                             partitions or sum(client.nthreads().values()) or 1, source)
        log.report, log.sha256 = single.report, content_sha256(path)
        log.quarantine = [client.scatter(single.quarantine)]
        if refuse_errors and single.report.errors:
            raise LogRefusedError(log)
        return log
    raw = _raw_frame(path, mapping, blocksize)
    available = [c for c in raw.columns if c != ROW_COLUMN]
    case_column = resolve_columns(
        mapping if not mapping.events_from_columns else mapping.model_copy(
            update={"columns": {k: v for k, v in mapping.columns.items()
                                if k not in ("activity", "timestamp")}}),
        available, source)["case_id"]
    try:
        lengths = raw.map_partitions(len).compute().tolist()
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # pandas' ParserError too
        raise EventLogError(
            f"{path}: cannot be read in blocks ({type(exc).__name__}: {exc}); a CSV with "
            "malformed lines or line breaks inside quoted fields reads with `l2c validate` "
            "in one process; convert it to Parquet for Dask") from exc
    rows_in = int(sum(lengths))
    if rows_in == 0:
        raise EventLogError(f"{path}: the file holds no events")
    starts = np.cumsum([1, *lengths[:-1]]).tolist()
    blocks = raw.to_delayed()
    numbered = [dask.delayed(_numbered)(b, s) for b, s in zip(blocks, starts, strict=True)]
    meta = _numbered(raw._meta, 1)
    import dask.dataframe as dd

    frame = dd.from_delayed(numbered, meta=meta, verify_meta=False)
    if partitions is None:
        threads = sum(client.nthreads().values()) or 1
        partitions = max(threads, -(-rows_in // ROWS_PER_PARTITION))
    shuffled = frame.shuffle(on=case_column, npartitions=partitions)
    if store is not None:
        Path(store).mkdir(parents=True, exist_ok=True)
    pieces = [dask.delayed(_canonical_part, nout=3)(part, mapping, source,
                                                    None if store is None else str(store))
              for part in shuffled.to_delayed()]
    futures = client.compute([piece for piece in pieces])
    parts = [client.submit(_item, f, 0) for f in futures]
    quarantine = [client.submit(_item, f, 1) for f in futures]
    reports = client.gather([client.submit(_item, f, 2) for f in futures])
    del futures
    report = merge_reports(reports, source)
    part_rows = [r.rows_kept for r in reports]
    if report.rows_in != rows_in:  # pragma: no cover - a row lost in the shuffle
        raise AssertionError(f"row books: {rows_in} rows read, {report.rows_in} canonicalised")
    log = PartitionedLog(client=client, parts=parts, quarantine=quarantine, report=report,
                         mapping=mapping, source=source, sha256=content_sha256(path),
                         part_rows=part_rows, store=None if store is None else str(store))
    if refuse_errors and report.errors:
        raise LogRefusedError(log)
    return log


def _item(values: tuple, i: int) -> Any:
    return values[i]


def merge_reports(reports: list[ValidationReport], source: str) -> ValidationReport:
    """The partitions' reports as one: counts summed, examples (first rows first) and
    messages kept once each."""
    out = ValidationReport(source=source)
    examples: dict[str, list[str]] = {}
    for report in reports:
        out.rows_in += report.rows_in
        out.rows_kept += report.rows_kept
        out.quarantined.update(report.quarantined)
        out.unknown_activities.update(report.unknown_activities)
        for reason, messages in report.examples.items():
            examples.setdefault(reason, []).extend(messages)
        for name in report.absent_optional:
            if name not in out.absent_optional:
                out.absent_optional.append(name)
        out.notes.extend(n for n in report.notes if n not in out.notes)
        out.errors.extend(e for e in report.errors if e not in out.errors)
    out.quarantined = Counter({k: v for k, v in out.quarantined.items() if v})
    out.examples = {reason: sorted(messages, key=_row_of)[:_EXAMPLES_PER_REASON]
                    for reason, messages in examples.items()}
    if out.rows_kept + out.rows_quarantined != out.rows_in:  # pragma: no cover
        raise AssertionError("row books do not balance across partitions")
    return out


def _row_of(message: str) -> int:
    """The row number a message quotes ("...: row 12, ..."), for ordering examples."""
    marker = message.find(": row ")
    if marker < 0:
        return 0
    digits = message[marker + 6:].split(",")[0].split(":")[0].strip()
    return int(digits) if digits.isdigit() else 0


def scatter_events(client: Any, events: pd.DataFrame, mapping: Mapping, partitions: int,
                   source: str = "<frame>") -> PartitionedLog:
    """Canonical events already in this process as a partitioned log (cases hashed to
    partitions, nothing quarantined): for a log read here, and for tests."""
    codes = pd.util.hash_array(np.asarray(events["case_id"], dtype=object)) % partitions
    frames = [events[codes == i].reset_index(drop=True) for i in range(partitions)]
    report = ValidationReport(source=source, rows_in=len(events), rows_kept=len(events))
    empty = pd.DataFrame()
    return PartitionedLog(client=client, parts=client.scatter(frames),
                          quarantine=client.scatter([empty] * partitions), report=report,
                          mapping=mapping, source=source, sha256="",
                          part_rows=[len(f) for f in frames])
