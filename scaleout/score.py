"""Batch scoring of a large log's open cases, partition by partition.

Each open case (no end event yet) gets its latest prefix scored by every given bundle,
as the API scores a running case. The cross-case features read the scored log itself
(every partition's cases, as of each prefix's end), as ``refresh_history(log)`` would
set them: a new extract's history replaces the training one's. The features are those
of ``bundle.pipeline.transform(whole log, last_only=True)``, bit for bit. The input
checks are the API's (``TargetBundle.checked``): a case whose input is not a finite
number gets no prediction (``predicted`` is False), and every case's notes (unknown
categories, values far outside the training range, why a case was not predicted) are
in a ``notes`` column.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import joblib
import numpy as np
import pandas as pd

from features.pipeline import FRAME_KEYS, PrefixPipeline
from models.bundle import CasesRead, TargetBundle
from scaleout.input import PartitionedLog
from scaleout.prefixes import answers_in_process, cross_case_answers, encode_partition, for_workers


def open_events(events: pd.DataFrame, end_activities: list[str]) -> pd.DataFrame:
    """The events of the cases without an end event."""
    if not end_activities:
        return events
    ended = events.loc[events["activity"].isin(end_activities).to_numpy(), "case_id"]
    return events[~events["case_id"].isin(pd.unique(ended)).to_numpy()]


def score_partition(events: pd.DataFrame, pipelines: list[PrefixPipeline],
                    bundles: list[tuple[int, TargetBundle]], end_activities: list[str],
                    answers: list[list[Any]]) -> pd.DataFrame:
    """Keys and every bundle's predictions (``<target>.<column>``) of the partition's
    open cases, one row per case (its latest prefix); ``answers``: per pipeline, the
    key buckets' cross-case answers to those prefixes."""
    events = open_events(events, end_activities)
    encoded = [encode_partition(p, events, True, *a)
               for p, a in zip(pipelines, answers, strict=True)]
    first = encoded[0]
    out = pd.DataFrame({key: first.keys[key] for key in FRAME_KEYS})
    read: dict[int, CasesRead] = {}
    notes: dict[str, list[str]] = {}
    out["predicted"] = True
    for which, bundle in bundles:
        if which not in read:  # one reading per distinct pipeline, every bundle of it
            read[which] = bundle.checked(encoded[which])
            for case, messages in read[which].notes.items():
                kept = notes.setdefault(case, [])
                kept += [m for m in messages if m not in kept]
        # as the API: a case whose input is not a finite number gets no prediction
        refused = np.isin(read[which].case_ids, list(read[which].refused))
        out["predicted"] &= ~refused
        for column, values in bundle.score(read[which]).predictions.items():
            out[f"{bundle.target_name}.{column}"] = pd.Series(values).mask(refused)
    said = pd.Series({case: "; ".join(messages) for case, messages in notes.items()
                      if messages}, dtype=object)
    out["notes"] = out["case_id"].map(said).fillna("").astype(object)
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


def _for_workers(which: list[tuple[int, TargetBundle]]) -> list[tuple[int, TargetBundle]]:
    """The bundles without their pipelines' training history (workers predict from the
    features they are given; the history would grow every worker with the training log)."""
    out = []
    for i, bundle in which:
        light = copy.copy(bundle)
        light.pipeline = for_workers(bundle.pipeline)
        out.append((i, light))
    return out


def _in_case_order(scores: pd.DataFrame) -> pd.DataFrame:
    order = np.argsort(scores["case_id"].to_numpy().astype(str), kind="stable")
    return scores.iloc[order].reset_index(drop=True)


def score_open_cases(log: PartitionedLog, bundles: list[TargetBundle]) -> pd.DataFrame:
    """Every open case of the log scored by every bundle, in case order.

    The cross-case features read the scored log itself (every partition's cases, as of
    each prefix's end; joined by key), as ``refresh_history(log)`` would set them: a
    new extract's history replaces the training one's."""
    if not bundles:
        raise ValueError("no model to score with")
    roles = bundles[0].mapping.roles
    if any(b.mapping.roles != roles for b in bundles):
        raise ValueError("the bundles were trained through different mappings' roles; "
                         "score with models of one run (or of one mapping)")
    client = log.client
    end = list(roles.end_activities)
    only_open = functools.partial(open_events, end_activities=end)
    pipelines, which = _distinct_pipelines(bundles)
    light = [for_workers(p) for p in pipelines]
    given = client.scatter(light, broadcast=True)
    answers = [cross_case_answers(client, log.parts, p, g, True, log.store, only_open)
               for p, g in zip(pipelines, given, strict=True)]
    bundles_f = client.scatter(_for_workers(which), broadcast=True)
    parts = client.gather([
        client.submit(_score_events, part, given, bundles_f, end,
                      [answers[j][i] for j in range(len(pipelines))])
        for i, part in enumerate(log.parts)])
    scores = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    return _in_case_order(scores)


def _score_events(part: Any, *args: Any) -> pd.DataFrame:
    from scaleout.input import load

    return score_partition(load(part), *args)


def score_in_process(events: pd.DataFrame, bundles: list[TargetBundle]) -> pd.DataFrame:
    """The same scores without a cluster (a log that fits in this process)."""
    roles = bundles[0].mapping.roles
    end = list(roles.end_activities)
    only_open = functools.partial(open_events, end_activities=end)
    pipelines, which = _distinct_pipelines(bundles)
    light = [for_workers(p) for p in pipelines]
    answers = [answers_in_process(p, events, True, only_open) for p in light]
    return _in_case_order(score_partition(events, light, which, end, answers))


def champion_bundles(targets: list[str]) -> list[Any]:
    """The registry's champion bundle of each target (all must have one)."""
    from models.pyfunc import load_bundle
    from models.registry import champion_uri, configure_mlflow
    from models.targets import TARGETS

    configure_mlflow()
    return [load_bundle(champion_uri(TARGETS[t].registered_name)) for t in targets]
