"""Batch scoring of a large log's open cases, partition by partition.

Each open case (no end event yet) gets its latest prefix scored by every given bundle,
as the API scores a running case. The cross-case features read the scored log itself
(every partition's cases, as of each prefix's end), as ``refresh_history(log)`` would
set them: a new extract's history replaces the training one's. The features are those
of ``bundle.pipeline.transform(whole log, last_only=True)``, bit for bit.
"""

from __future__ import annotations

from typing import Any

import joblib
import numpy as np
import pandas as pd

from features.crosscase import CaseFacts
from features.pipeline import FRAME_KEYS, PrefixPipeline
from models.bundle import CasesRead, TargetBundle
from scaleout.history import join_facts, partition_facts
from scaleout.input import PartitionedLog
from scaleout.prefixes import encode_partition, with_history


def open_events(events: pd.DataFrame, end_activities: list[str]) -> pd.DataFrame:
    """The events of the cases without an end event."""
    if not end_activities:
        return events
    ended = events.loc[events["activity"].isin(end_activities).to_numpy(), "case_id"]
    return events[~events["case_id"].isin(pd.unique(ended)).to_numpy()]


def score_partition(events: pd.DataFrame, pipelines: list[PrefixPipeline],
                    bundles: list[tuple[int, TargetBundle]],
                    end_activities: list[str]) -> pd.DataFrame:
    """Keys and every bundle's predictions (``<target>.<column>``) of the partition's
    open cases, one row per case (its latest prefix)."""
    events = open_events(events, end_activities)
    encoded = [encode_partition(p, events, last_only=True) for p in pipelines]
    first = encoded[0]
    out = pd.DataFrame({key: first.keys[key] for key in FRAME_KEYS})
    read: dict[int, CasesRead] = {}
    for which, bundle in bundles:
        if which not in read:  # one reading per distinct pipeline, every bundle of it
            read[which] = bundle.checked(encoded[which])
        for column, values in bundle.score(read[which]).predictions.items():
            out[f"{bundle.target_name}.{column}"] = values
    return out


def _distinct_pipelines(bundles: list[TargetBundle]
                        ) -> tuple[list[PrefixPipeline], list[tuple[int, TargetBundle]]]:
    """Bundles of one run carry equal pipelines: featurise once per distinct one."""
    pipelines: list[PrefixPipeline] = []
    hashes: list[str] = []
    which = []
    for bundle in bundles:
        digest = joblib.hash(bundle.pipeline)
        if digest not in hashes:
            hashes.append(digest)
            pipelines.append(bundle.pipeline)
        which.append((hashes.index(digest), bundle))
    return pipelines, which


def score_open_cases(log: PartitionedLog, bundles: list[TargetBundle]) -> pd.DataFrame:
    """Every open case of the log scored by every bundle, in case order."""
    if not bundles:
        raise ValueError("no model to score with")
    roles = bundles[0].mapping.roles
    if any(b.mapping.roles != roles for b in bundles):
        raise ValueError("the bundles were trained through different mappings' roles; "
                         "score with models of one run (or of one mapping)")
    client = log.client
    facts: list[CaseFacts] = client.gather(log.map(partition_facts, roles))
    history = join_facts(facts)
    pipelines, which = _distinct_pipelines(bundles)
    given = client.scatter([with_history(p, history) for p in pipelines], broadcast=True)
    bundles_f = client.scatter(which, broadcast=True)
    parts = client.gather(log.map(score_partition, given, bundles_f,
                                  list(roles.end_activities)))
    scores = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    order = np.argsort(scores["case_id"].to_numpy().astype(str), kind="stable")
    return scores.iloc[order].reset_index(drop=True)


def score_in_process(events: pd.DataFrame, bundles: list[TargetBundle]) -> pd.DataFrame:
    """The same scores without a cluster (a log that fits in this process)."""
    roles = bundles[0].mapping.roles
    history = join_facts([partition_facts(events, roles)])
    pipelines, which = _distinct_pipelines(bundles)
    given = [with_history(p, history) for p in pipelines]
    scores = score_partition(events, given, which, list(roles.end_activities))
    order = np.argsort(scores["case_id"].to_numpy().astype(str), kind="stable")
    return scores.iloc[order].reset_index(drop=True)


def champion_bundles(targets: list[str]) -> list[Any]:
    """The registry's champion bundle of each target (all must have one)."""
    from models.pyfunc import load_bundle
    from models.registry import champion_uri, configure_mlflow
    from models.targets import TARGETS

    configure_mlflow()
    return [load_bundle(champion_uri(TARGETS[t].registered_name)) for t in targets]
