"""Domain exceptions for event logs.

A small hierarchy so callers (the CLI, the API) can map each failure to a clear
message and the right exit code or HTTP status without parsing strings.
"""

from __future__ import annotations


class EventLogError(Exception):
    """An event log cannot be used as it is; the message says where and why."""


class MappingError(EventLogError):
    """The mapping file is malformed or does not fit the log it is applied to."""


class MissingColumnsError(MappingError):
    """The log lacks columns the mapping requires; names what was expected and found."""

    def __init__(self, source: str, missing: dict[str, str], found: list[str]) -> None:
        self.source = source
        self.missing = missing
        self.found = found
        wanted = ", ".join(f"{role} -> '{col}'" for role, col in missing.items())
        super().__init__(
            f"{source}: the mapping names column(s) the file lacks: {wanted}. "
            f"Columns found: {', '.join(repr(c) for c in found)}"
        )


class LogRefusedError(EventLogError):
    """The log was read, but as a whole it cannot be trusted (see ``report.errors``)."""

    def __init__(self, log: object) -> None:
        self.log = log
        errors = log.report.errors  # type: ignore[attr-defined]
        super().__init__("; ".join(errors))


class UnsupportedFormatError(EventLogError):
    """The file extension names no format we can read or write."""


class FeatureSchemaError(EventLogError):
    """Features do not match the schema the model was trained on."""
