"""What a person must know about a served model before trusting its numbers: it was
trained below the thin-data minimum ("low data"), or it is a baseline that no learnt
model beat. Said wherever the model's numbers are shown: ``GET /v1/models`` (in full),
each prediction's notes, the forecast's assumptions and the cockpit's pages; one source
of words, so they never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.targets import TARGETS
from serving.store import Snapshot

#: what each target's number is called where people read it
NUMBER = {"outcome": "win probability", "remaining_time": "expected end",
          "payment_delay": "payment delay"}


@dataclass(frozen=True)
class Caveat:
    target: str
    version: int
    #: the training run's "low data: ..." message with the counts, or None
    low_data: str | None
    #: the baseline's name in words ("overall win rate") when one is shipped, or None
    baseline: str | None

    @property
    def text(self) -> str:
        """One sentence for people: which number, which model, what to know."""
        said = []
        if self.low_data:
            said.append(f"low data, {_counts(self.target, self.low_data)}; treat it as "
                        "rough.")
        if self.baseline:
            said.append(f"{'It' if said else 'it'} is the {self.baseline}, a baseline: no "
                        "learnt model beat it on this history.")
        return (f"The {NUMBER.get(self.target, self.target)} (model version "
                f"{self.version}): " + " ".join(said))


def _counts(target: str, message: str) -> str:
    """The training run's message ("low data: outcome was trained on 41 won, ...; at
    least 200 won, ... are needed ... . Treat ...") as "trained on 41 won, ...; at least
    ... are needed ...": the number it is about is named already."""
    body = message.removeprefix("low data: ").removeprefix(f"{target} was ")
    return body.split(". Treat", 1)[0]


def served_caveats(snapshot: Snapshot) -> list[Caveat]:
    """The caveats of the served models, in the targets' order; none for a model trained
    on enough data that beat its baselines."""
    found = []
    for target in (t for t in TARGETS if t in snapshot.models):
        served = snapshot.models[target]
        info: dict[str, Any] = getattr(served.bundle, "info", {}) or {}
        low = info.get("low_data") or None
        baseline = (info.get("kind_label") or info.get("kind")
                    if info.get("kind_is_baseline") else None)
        if low or baseline:
            found.append(Caveat(target, served.version, low, baseline))
    return found


def low_data_notes(snapshot: Snapshot) -> dict[str, str]:
    """Per target served by a low-data model, the note each of its predictions carries."""
    return {c.target: f"low data: the {c.target} model (version {c.version}) was trained "
            "below the minimum of labelled cases; treat its number as rough (GET /v1/models "
            "gives the counts)" for c in served_caveats(snapshot) if c.low_data}
