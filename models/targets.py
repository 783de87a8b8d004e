"""The three prediction targets: which label, which rows, how to judge a model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

#: process names that keep the original model names: the simulator's log in either of its
#: formats, and a mapping that names no process
DEFAULT_PROCESSES = frozenset({"", "simulator", "crm-table", "unnamed"})


def process_slug(process: str | None) -> str | None:
    """A process name as it goes into a model name (None: the default process).

    Lower case, runs of anything but letters, digits and '-' as one '-'."""
    if process is None:
        return None
    slug = re.sub(r"[^a-z0-9-]+", "-", process.strip().lower()).strip("-")
    return None if slug in DEFAULT_PROCESSES else slug


@dataclass(frozen=True)
class Target:
    name: str
    kind: Literal["classification", "regression"]
    label: str
    usable: str
    censored: str | None
    registered_name: str
    main_metric: str
    higher_is_better: bool
    description: str

    def model_name(self, process: str | None = None) -> str:
        """The registered model name of this target for one process.

        Two processes (two mappings, two companies' logs) trained into one MLflow store
        must not overwrite each other's versions and champions, so the name carries the
        process: ``l2c-<process>-outcome``. The default process keeps the original names
        (``l2c-outcome``): see :data:`DEFAULT_PROCESSES`.
        """
        slug = process_slug(process)
        if slug is None:
            return self.registered_name
        return self.registered_name.replace("l2c-", f"l2c-{slug}-", 1)

    def rows(self, labels: pd.DataFrame) -> np.ndarray:
        """Prefixes with a known label: usable, labelled and not censored.

        Censored (still open) cases are left out of training and evaluation: their
        label is only a lower bound. See the README on what this means for remaining time.
        """
        mask = labels[self.usable].to_numpy(dtype=bool) & labels[self.label].notna().to_numpy()
        if self.censored is not None:
            mask &= ~labels[self.censored].to_numpy(dtype=bool)
        return mask


TARGETS: dict[str, Target] = {
    "outcome": Target(
        name="outcome", kind="classification", label="won", usable="outcome_usable",
        censored=None, registered_name="l2c-outcome", main_metric="auc",
        higher_is_better=True, description="P(the opportunity is won)",
    ),
    "remaining_time": Target(
        name="remaining_time", kind="regression", label="remaining_days",
        usable="remaining_usable", censored="remaining_censored",
        registered_name="l2c-remaining-time", main_metric="mae_days", higher_is_better=False,
        description="days from the prefix's last event to the end of the case",
    ),
    "payment_delay": Target(
        name="payment_delay", kind="regression", label="payment_delay_days",
        usable="payment_usable", censored="payment_censored",
        registered_name="l2c-payment-delay", main_metric="mae_days", higher_is_better=False,
        description="days between the payment due date and the payment (negative = early)",
    ),
}


def resolve_targets(choice: str) -> list[Target]:
    """'all' or one target name -> the targets to train."""
    if choice == "all":
        return list(TARGETS.values())
    if choice not in TARGETS:
        raise ValueError(f"unknown target {choice!r}; choose all or one of {list(TARGETS)}")
    return [TARGETS[choice]]
