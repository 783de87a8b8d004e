"""Test logs for the Dask path: a simulated CSV read back as text (so a test can spoil
rows as a bad export would), and the same rows as a directory of Parquet files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.io import write_frame
from features.simulate import simulate_log


def simulated_csv(folder: Path, n_cases: int, seed: int) -> tuple[Path, pd.DataFrame]:
    """A simulated log written as ``folder/log.csv``, and its rows as text."""
    events, _ = simulate_log(n_cases=n_cases, seed=seed)
    path = folder / "log.csv"
    write_frame(events, path, case_column="opportunity_id", activity_column="activity",
                timestamp_column="event_time", resource_column="user")
    return path, pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def write_with_parts(raw: pd.DataFrame, path: Path, parts: int = 3) -> Path:
    """``raw`` written back to ``path`` and, in file order, as ``parts`` Parquet files in
    a folder beside it (returned)."""
    raw.to_csv(path, index=False)
    folder = path.parent / "parquet"
    folder.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(raw)), parts)):
        raw.iloc[rows].to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder
