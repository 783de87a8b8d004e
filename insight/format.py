"""Numbers for people: rounded, with units and currencies, never two currencies summed."""

from __future__ import annotations

import math


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def pct(share: float | None, digits: int = 0) -> str:
    """0.183 -> "18%"; shares under 1% keep one decimal."""
    if _missing(share):
        return "n/a"
    value = 100.0 * float(share)
    if digits == 0 and 0 < abs(value) < 1:
        digits = 1
    return f"{value:.{digits}f}%"


def days(value: float | None) -> str:
    """Durations in days for people: "6.1 days", "3.5 hours" under a day."""
    if _missing(value):
        return "n/a"
    value = float(value)
    if abs(value) < 1.0:
        hours = value * 24.0
        if abs(hours) < 1.0:
            return f"{hours * 60.0:.0f} minutes"
        return f"{hours:.1f} hours"
    return f"{value:.1f} days" if abs(value) < 100 else f"{value:,.0f} days"


def amount(value: float | None) -> str:
    """1234567 -> "1.2M"; 12345 -> "12.3k"; small amounts as whole units."""
    if _missing(value):
        return "n/a"
    value = float(value)
    for size, suffix in ((1e9, "bn"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}"
    return f"{value:,.0f}"


def money_text(totals: dict[str, float]) -> str:
    """{"EUR": 1.2e6, "USD": 3e5} -> "EUR 1.2M and USD 300.0k" (one figure per currency)."""
    if not totals:
        return "n/a"
    parts = [f"{cur} {amount(v)}" for cur, v in sorted(totals.items())]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def number(value: float | int | None) -> str:
    if _missing(value):
        return "n/a"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{float(value):,.2f}"
