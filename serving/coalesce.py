"""Concurrent ``/v1/predict`` requests scored together: one pass, many answers.

Scoring one case costs ~30 ms, almost all of it fixed (a few hundred pandas and numpy
calls whatever the size); eight cases in one pass cost ~40 ms. So while a pass runs
(in a worker thread, the event loop keeps reading requests), the requests that arrive
wait, and the next pass takes them all. A lone request is scored at once: nothing
waits for company. Requests in one pass are scored apart (``predict_together``), so
an answer never depends on which others came with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi.concurrency import run_in_threadpool

from serving.schemas import PredictRequest
from serving.store import Snapshot

Scorer = Callable[[Snapshot, Sequence[PredictRequest]], list[Any]]


@dataclass
class _Waiting:
    snapshot: Snapshot
    request: PredictRequest
    answer: asyncio.Future[dict[str, Any]]

    def fits(self, first: _Waiting, case_ids: set[str]) -> bool:
        """Same models and way of answering as the pass's first request, a new case."""
        return (self.snapshot is first.snapshot and self.request.case_id not in case_ids
                and (self.request.explain, self.request.top_k)
                == (first.request.explain, first.request.top_k))


@dataclass
class PassCounts:
    """What the coalescer did, for ``/ready`` and the tests."""

    passes: int = 0
    requests: int = 0
    largest_pass: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # pass size -> passes


class PredictionCoalescer:
    """Gathers the requests that arrive while a pass runs into the next pass.

    ``max_cases`` bounds a pass (its latency grows ~1 ms per case); ``enabled=False``
    scores every request alone, in its own thread, as a plain endpoint would.
    """

    def __init__(self, score: Scorer, max_cases: int = 32, enabled: bool = True) -> None:
        if max_cases < 1:
            raise ValueError("max_cases must be at least 1")
        self.score = score
        self.max_cases = max_cases if enabled else 1
        self.counts = PassCounts()
        self._waiting: list[_Waiting] = []
        self._draining: asyncio.Task[None] | None = None

    async def predict(self, snapshot: Snapshot, request: PredictRequest) -> dict[str, Any]:
        """The request's answer; raises the error its case meets when scored alone."""
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(snapshot, request, answer))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._next_pass()
                if not batch:  # every waiting client went away
                    continue
                try:
                    answers = await run_in_threadpool(
                        self.score, batch[0].snapshot, [w.request for w in batch])
                except Exception as exc:  # the pass itself failed: every request hears it
                    answers = [exc] * len(batch)
                self._count(len(batch))
                for waiting, answer in zip(batch, answers, strict=True):
                    if waiting.answer.done():  # the client went away
                        continue
                    if isinstance(answer, BaseException):
                        waiting.answer.set_exception(answer)
                    else:
                        waiting.answer.set_result(answer)
        finally:
            self._draining = None

    def _next_pass(self) -> list[_Waiting]:
        """The oldest waiting request and, in arrival order, those that fit with it."""
        first, taken, left = self._waiting[0], [], []
        case_ids: set[str] = set()
        for waiting in self._waiting:
            if waiting.answer.done():  # cancelled while waiting: nothing to score
                continue
            if len(taken) < self.max_cases and waiting.fits(first, case_ids):
                taken.append(waiting)
                case_ids.add(waiting.request.case_id)
            else:
                left.append(waiting)
        self._waiting = left
        return taken

    def _count(self, size: int) -> None:
        counts = self.counts
        counts.passes += 1
        counts.requests += size
        counts.largest_pass = max(counts.largest_pass, size)
        counts.sizes[size] = counts.sizes.get(size, 0) + 1
