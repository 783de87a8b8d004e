"""What every insight section has: whether it could be computed, and if not, why."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TypeVar

import pandas as pd

S = TypeVar("S", bound="Section")


@dataclass
class Section:
    """``available`` is False when the log lacks what the section needs; ``reason`` then
    says what is missing in words a user can act on (e.g. "no discount column mapped")."""

    available: bool = True
    reason: str | None = None

    @classmethod
    def unavailable(cls: type[S], reason: str) -> S:
        return cls(available=False, reason=reason)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The section's data frames by field name (for reports, JSON and segments)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), pd.DataFrame)}
