"""Concurrent ``/v1/predict`` requests scored together: one pass, many answers.

Scoring one case costs almost as much as scoring eight: the cost of a pass is nearly
all fixed (a few hundred pandas and numpy calls whatever the size; figures in
docs/performance.md). So while a pass runs
(in the scoring thread, the event loop keeps reading requests), the requests that arrive
wait, and the next pass takes them all. A lone request is scored at once: nothing
waits for company. Each case in a pass is scored alone (``predict_together``), so
an answer never depends on which others came with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from serving.schemas import PredictRequest
from serving.store import Snapshot
from serving.threads import in_scoring_thread

Scorer = Callable[[Snapshot, Sequence[PredictRequest]], list[Any]]


@dataclass
class _Waiting:
    snapshot: Snapshot
    request: PredictRequest
    answer: asyncio.Future[dict[str, Any]]
    _json: str | None = None

    def same_question(self, other: _Waiting) -> bool:
        """The same models and the same request, value for value and type for type
        (``==`` on the models would take 1, 1.0 and true for one another; the reader
        does not)."""
        return self.snapshot is other.snapshot and self.as_json() == other.as_json()

    def as_json(self) -> str:
        if self._json is None:
            self._json = self.request.model_dump_json()
        return self._json

    def fits(self, first: _Waiting, case_ids: set[str]) -> bool:
        """Same models and way of answering as the pass's first request, a new case."""
        return (self.snapshot is first.snapshot and self.request.case_id not in case_ids
                and self.request.answer_form() == first.request.answer_form())


@dataclass
class PassCounts:
    """What the coalescer did, for ``/ready`` and the tests."""

    passes: int = 0
    requests: int = 0
    largest_pass: int = 0  # cases scored in one pass
    shared_answers: int = 0  # requests answered by an equal request's scoring
    scoring_seconds: float = 0.0  # spent in passes (the scoring thread)
    sizes: dict[int, int] = field(default_factory=dict)  # pass size -> passes


class PredictionCoalescer:
    """Gathers the requests that arrive while a pass runs into the next pass.

    ``max_cases`` bounds a pass (its latency grows with every case); ``gather_ms`` is how
    long a pass may wait for the requests expected (as many as were in flight before);
    ``enabled=False`` scores every request alone (in the scoring thread).
    """

    def __init__(self, score: Scorer, max_cases: int = 32, enabled: bool = True,
                 gather_ms: float = 15.0) -> None:
        if max_cases < 1:
            raise ValueError("max_cases must be at least 1")
        self.score = score
        self.enabled = enabled
        self.max_cases = max_cases if enabled else 1
        self.gather_s = gather_ms / 1000
        self.counts = PassCounts()
        self._waiting: list[_Waiting] = []
        self._arrived = asyncio.Event()  # set by each arrival, for a pass gathering them
        self._draining: asyncio.Task[None] | None = None
        self._in_flight = 0  # requests inside ``predict``
        self._peak_in_flight = 0  # most in flight since the last pass started

    async def predict(self, snapshot: Snapshot, request: PredictRequest) -> dict[str, Any]:
        """The request's answer; raises the error its case meets when scored alone."""
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(snapshot, request, answer))
        self._arrived.set()
        self._in_flight += 1
        self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        try:
            return await answer
        finally:
            self._in_flight -= 1

    async def _gather(self) -> None:
        """Wait up to ``gather_ms`` for as many requests as were in flight last time.

        Clients answered by the last pass send their next requests within a few ms; a
        pass started on the first of them would leave the rest waiting a whole pass
        (passes would alternate 2 and 6 requests, each request waiting for two). A
        lone client never waits: one request was in flight.
        """
        expected = min(self._peak_in_flight, self.max_cases)
        self._peak_in_flight = self._in_flight
        if self.gather_s <= 0 or len(self._waiting) >= expected:
            return
        clock = asyncio.get_running_loop().time
        deadline = clock() + self.gather_s
        while len(self._waiting) < expected:
            left = deadline - clock()
            if left <= 0:
                return
            self._arrived.clear()
            try:  # woken by the next arrival, not by a timer
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await self._gather()
                batch = self._next_pass()
                if not batch:  # every waiting client went away
                    continue
                started = time.perf_counter()
                try:
                    answers = await in_scoring_thread(
                        self.score, batch[0][0].snapshot, [same[0].request for same in batch])
                except Exception as exc:  # the pass itself failed: every request hears it
                    answers = [exc] * len(batch)
                self._count(batch, time.perf_counter() - started)
                for same, answer in zip(batch, answers, strict=True):
                    for waiting in same:
                        if waiting.answer.done():  # the client went away
                            continue
                        if isinstance(answer, BaseException):
                            waiting.answer.set_exception(answer)
                        else:
                            waiting.answer.set_result(answer)
        finally:
            self._draining = None

    def _next_pass(self) -> list[list[_Waiting]]:
        """The oldest waiting request and, in arrival order, those that fit with it;
        a request equal to one taken (the same case sent twice at once) shares its
        answer instead of waiting for the next pass."""
        first, taken, left = self._waiting[0], [], []
        by_case: dict[str, list[_Waiting]] = {}
        for waiting in self._waiting:
            if waiting.answer.done():  # cancelled while waiting: nothing to score
                continue
            same = by_case.get(waiting.request.case_id)
            if same is not None and self.enabled and waiting.same_question(same[0]):
                same.append(waiting)
            elif len(taken) < self.max_cases and waiting.fits(first, set(by_case)):
                by_case[waiting.request.case_id] = [waiting]
                taken.append(by_case[waiting.request.case_id])
            else:
                left.append(waiting)
        self._waiting = left
        return taken

    def _count(self, batch: list[list[_Waiting]], seconds: float) -> None:
        counts = self.counts
        size = len(batch)
        counts.scoring_seconds += seconds
        counts.passes += 1
        counts.requests += sum(len(same) for same in batch)
        counts.shared_answers += sum(len(same) - 1 for same in batch)
        counts.largest_pass = max(counts.largest_pass, size)
        counts.sizes[size] = counts.sizes.get(size, 0) + 1
