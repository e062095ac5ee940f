"""Runs a stage list over a stream of records, sequentially or concurrently.

A stage list is built in one place (``pipeline.build_stages``) and read in order. Each stage says
which record type it ``takes``; a record of another type passes it untouched, so a photo
that needs no decoding (an ``Outcome`` already, or a verdict re-decided from its XMP)
goes straight on to the writer or out. The kinds say where a stage runs:

- ``Source``: the whole input stream in, a stream out, on the calling thread, before
  anything else (bursts sort each folder by capture time);
- ``Parallel``: one record in, one out, on the decode pool (reading, decoding);
- ``Batch``: a list in, as many out, on the calling thread (inference);
- ``Hold``: one record in, none or several out, on the calling thread, and what it
  still holds at the end (bursts wait for a gap no frame can bridge);
- ``Serial``: one record in, one out, on the one writer thread (the XMP write).

A list reads ``Source* Parallel* (Batch | Hold)* Serial*``. ``run_sequential`` runs it on
the calling thread (tests, ``--jobs 1``); ``run_concurrent`` keeps at most ``window``
records on the pool and lets at most ``writes_behind`` writes wait behind inference, so
memory stays flat. Both yield records as they leave the last stage, in that order.

    stages = [Parallel(decode, takes=Candidate), Batch(score, takes=Decoded, size=1),
              Serial(write, takes=Verdict)]
    for outcome in run_sequential(stages, candidates): ...
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

Takes: TypeAlias = type | tuple[type, ...]


@dataclass(frozen=True)
class Source:
    """The input stream in, a stream out (may reorder; runs lazily, ahead of the pool)."""

    run: Callable[[Iterable[Any]], Iterable[Any]]


@dataclass(frozen=True)
class Parallel:
    run: Callable[[Any], Any]
    takes: Takes


@dataclass(frozen=True)
class Batch:
    run: Callable[[list[Any]], list[Any]]
    takes: Takes
    size: int


class Holder(Protocol):
    def push(self, record: Any) -> list[Any]:
        """The records released now (this one, others held before, or none)."""

    def flush(self) -> list[Any]:
        """The records still held, at the end of the input."""


@dataclass(frozen=True)
class Hold:
    holder: Holder
    takes: Takes


@dataclass(frozen=True)
class Serial:
    run: Callable[[Any], Any]
    takes: Takes


Stage: TypeAlias = Source | Parallel | Batch | Hold | Serial
_ORDER: tuple[tuple[type, ...], ...] = ((Source,), (Parallel,), (Batch, Hold), (Serial,))


@dataclass(frozen=True)
class Plan:
    """A stage list split by where its stages run."""

    sources: tuple[Source, ...]
    parallel: tuple[Parallel, ...]
    middle: tuple[Batch | Hold, ...]
    serial: tuple[Serial, ...]

    @classmethod
    def of(cls, stages: Iterable[Stage]) -> Plan:
        groups: list[list[Any]] = [[] for _ in _ORDER]
        at = 0
        for stage in stages:
            while at < len(_ORDER) and not isinstance(stage, _ORDER[at]):
                at += 1
            if at == len(_ORDER):
                raise ValueError(f"{type(stage).__name__} stage out of order: a stage list "
                                 "reads Source* Parallel* (Batch | Hold)* Serial*")
            groups[at].append(stage)
        sources, parallel, middle, serial = groups
        return cls(tuple(sources), tuple(parallel), tuple(middle), tuple(serial))

    def source(self, records: Iterable[Any]) -> Iterator[Any]:
        for stage in self.sources:
            records = stage.run(records)
        return iter(records)

    def run_parallel(self, record: Any) -> Any:
        return _each(self.parallel, record)

    def run_serial(self, record: Any) -> Any:
        return _each(self.serial, record)


def _each(stages: Iterable[Parallel | Serial], record: Any) -> Any:
    for stage in stages:
        if isinstance(record, stage.takes):
            record = stage.run(record)
    return record


class _Middle:
    """The calling thread's stages: batches fill up, holders hold, the rest passes."""

    def __init__(self, stages: tuple[Batch | Hold, ...]):
        self.stages = stages
        self.batches: list[list[Any]] = [[] for _ in stages]

    def push(self, record: Any, at: int = 0) -> list[Any]:
        if at == len(self.stages):
            return [record]
        stage = self.stages[at]
        if not isinstance(record, stage.takes):
            return self.push(record, at + 1)
        if isinstance(stage, Hold):
            released = stage.holder.push(record)
        else:
            batch = self.batches[at]
            batch.append(record)
            released = self._run_batch(at) if len(batch) >= stage.size else []
        return [out for r in released for out in self.push(r, at + 1)]

    def flush(self) -> list[Any]:
        """Everything still held or batched, stage by stage, through the stages after."""
        out: list[Any] = []
        for at, stage in enumerate(self.stages):
            released = stage.holder.flush() if isinstance(stage, Hold) else self._run_batch(at)
            out += [o for r in released for o in self.push(r, at + 1)]
        return out

    def _run_batch(self, at: int) -> list[Any]:
        stage, batch = self.stages[at], self.batches[at]
        if not batch:
            return []
        assert isinstance(stage, Batch)
        done = stage.run(list(batch))
        batch.clear()
        return done


def run_sequential(stages: Iterable[Stage], records: Iterable[Any]) -> Iterator[Any]:
    """Every stage on the calling thread, one record at a time."""
    plan = Plan.of(stages)
    middle = _Middle(plan.middle)
    for record in plan.source(records):
        for out in middle.push(plan.run_parallel(record)):
            yield plan.run_serial(out)
    for out in middle.flush():
        yield plan.run_serial(out)


def run_concurrent(stages: Iterable[Stage], records: Iterable[Any], *,
                   pool: ThreadPoolExecutor, writer: ThreadPoolExecutor,
                   window: int, writes_behind: int) -> Iterator[Any]:
    """``Parallel`` stages on ``pool`` (at most ``window`` records at a time), ``Batch``
    and ``Hold`` stages on the calling thread, ``Serial`` stages on ``writer``, with at
    most ``writes_behind`` writes pending before the calling thread waits for them."""
    plan = Plan.of(stages)
    middle = _Middle(plan.middle)
    source = plan.source(records)
    on_pool: deque[Future[Any]] = deque()
    results: deque[Future[Any] | Any] = deque()
    exhausted = False

    def hand_on(outs: list[Any]) -> None:
        for out in outs:
            if any(isinstance(out, stage.takes) for stage in plan.serial):
                results.append(writer.submit(plan.run_serial, out))
            else:
                results.append(out)

    while True:
        while not exhausted and len(on_pool) < window:
            record = next(source, _END)
            if record is _END:
                exhausted = True
            else:
                on_pool.append(pool.submit(plan.run_parallel, record))
        if not on_pool:
            break
        hand_on(middle.push(on_pool.popleft().result()))
        yield from _drain(results, keep=writes_behind)
    hand_on(middle.flush())
    yield from _drain(results, keep=0)


_END = object()


def _drain(results: deque[Future[Any] | Any], *, keep: int) -> Iterator[Any]:
    """Yield the finished records in order, waiting for writes while over ``keep``."""
    while results:
        head = results[0]
        if isinstance(head, Future) and not head.done() and len(results) <= keep:
            return
        results.popleft()
        yield head.result() if isinstance(head, Future) else head
