"""`RoutingDataBuilder`: build routing data by running (query, candidate) pairs and scoring the answers.

The annotation bottleneck of routing (survey §5.2.3): a table of ``n`` queries x ``m`` candidates needs
``n·m`` generations and as many judgements. The builder fills a
:class:`~rag_routing.evaluation.dataset.RoutingDataset` cell by cell, only the cells it is asked for:

* each chosen pair calls the candidate through :class:`~rag_routing.routers.judges.llm_client.LLMClient`
  (a LocalLLM, any LangChain chat model, or a callable ``prompt -> text``), inside the ambient cost ledger
  (its own ledger when there is none): the cell's cost is what the ledger recorded for that call
  (``stage="label_generation"``, ``component=<candidate>``), never a guess; a budget on the ledger refuses a
  call *before* it runs;
* an :mod:`answer scorer <rag_routing.evaluation.answer_scorers>` turns the answer and the query's reference
  answers into the cell's quality in [0, 1] (a judge's calls are billed under ``stage="label_judge"``);
* cells not labelled yet stay NaN (unknown, never 0), and the table is written atomically, after every batch,
  as the generic JSONL that ``rag-routing bench`` reads (the references ride along in each row's
  ``meta["references"]``, each answer in ``response``).

Resuming: give the same ``path`` again (or :meth:`RoutingDataBuilder.from_jsonl`): labelled cells are kept, an
answer that was generated but not scored (the judge failed) is scored without calling the candidate again,
and new queries or candidates may be added (none may be dropped). Which cells to label is the job of an
:mod:`active sampler <rag_routing.evaluation.active_sampling>` (:meth:`RoutingDataBuilder.run`).

Example:
    >>> import tempfile, pathlib
    >>> from rag_routing.candidates import Pricing
    >>> from rag_routing.evaluation.answer_scorers import TokenF1Scorer
    >>> free = Pricing(input_per_mtok=0.0, output_per_mtok=0.0)
    >>> builder = RoutingDataBuilder(
    ...     ["Capital of Peru?", "Author of Faust?"], {"small": lambda p: "Lima", "large": lambda p: "Goethe"},
    ...     TokenF1Scorer(), references=[["Lima"], ["Goethe"]], pricing={"small": free, "large": free},
    ...     path=pathlib.Path(tempfile.mkdtemp()) / "labels.jsonl")
    >>> [o.quality for o in builder.label([(0, 0), (1, 0)])]
    [1.0, 0.0]
    >>> builder.dataset.quality.tolist()
    [[1.0, nan], [0.0, nan]]
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag_routing.candidates import Pricing
from rag_routing.errors import BudgetExceededError, InvalidInputError
from rag_routing.evaluation.answer_scorers import LABEL_JUDGE_STAGE, AnswerScorer
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.scope import current_ledger, ledger_scope
from rag_routing.validation import check_choice

#: Ledger stage of the candidates' calls made to label data.
LABEL_GENERATION_STAGE = "label_generation"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelOutcome:
    """One labelled cell: the answer, its quality, the candidate call's US $ and the judging US $."""

    query_index: int
    candidate: str
    answer: str
    quality: float
    cost_usd: float
    judge_cost_usd: float


@dataclass(frozen=True)
class LabelingRun:
    """What :meth:`RoutingDataBuilder.run` did.

    Attributes:
        labelled: cells labelled in this run; failed: cells that failed (``on_error="skip"``).
        remaining: cells still unlabelled; generation_usd / judge_usd: what this run's calls cost (ledger).
        seconds: wall time; stopped: ``"done"`` (nothing left to label), ``"max_labels"``, ``"budget"`` (the
        ledger refused a call) or ``"stalled"`` (the sampler offered nothing new).
    """

    labelled: int
    failed: int
    remaining: int
    generation_usd: float
    judge_usd: float
    seconds: float
    stopped: str
    path: Path | None


@dataclass(frozen=True)
class CellLabeler:
    """Generates and scores one cell. It holds no table and no ledger, so it can travel to other processes
    (:mod:`rag_routing.ray_jobs` ships it to Ray workers); the builder and the workers share this one path."""

    clients: Mapping[str, Any]
    scorer: AnswerScorer
    system: str | None
    max_tokens: int

    def messages(self, query: str) -> list[dict[str, str]]:
        user = [{"role": "user", "content": query}]
        return [{"role": "system", "content": self.system}, *user] if self.system else user

    def generate(self, query: str, candidate: str) -> tuple[str, float]:
        """Call ``candidate`` on ``query`` (inside the ambient ledger): the answer and what the call cost."""
        done = self.clients[candidate].complete(self.messages(query), max_tokens=self.max_tokens, temperature=0.0)
        return done.text, float(done.cost_usd)

    def score(self, ledger: CostLedger, query: str, answer: str, references: Any) -> tuple[float, float]:
        """The answer's quality and the US $ the judge's calls added to ``ledger``."""
        start = len(ledger)
        quality = self.scorer.score(query, answer, references)
        judge_usd = math.fsum(e.cost_usd for e in ledger.entries[start:] if e.stage == LABEL_JUDGE_STAGE)
        return float(quality), judge_usd


def _query_list(queries: Sequence[str]) -> list[str]:
    if isinstance(queries, str) or not isinstance(queries, Sequence) or not queries:
        raise InvalidInputError("queries must be a non-empty list of strings")
    for i, q in enumerate(queries):
        if not isinstance(q, str) or not q.strip():
            raise InvalidInputError(f"query {i} must be a non-empty string")
    if len(set(queries)) != len(queries):
        raise InvalidInputError("queries must be distinct (a resumed table matches rows by their text)")
    return list(queries)


class RoutingDataBuilder:
    """Label (query, candidate) cells into a routing table, through the ledger (see module docstring).

    Args:
        queries: the distinct query texts (the table's rows).
        candidates: ``{name: model}``: LocalLLM, LangChain chat model, callable ``prompt -> text`` or
            ``LLMClient`` (the table's columns, in this order).
        scorer: the :class:`~rag_routing.evaluation.answer_scorers.AnswerScorer` of the answers.
        references: per query, its reference answers (a string or a list), or ``None``.
        metadata: per query, a dict kept in the JSONL ``meta``.
        path: the JSONL file; an existing one is resumed (it must hold a subset of these queries and candidates).
        system: an optional system message sent before each query.
        max_tokens: answer length cap of the candidate calls.
        pricing: ``{name: Pricing}`` for candidates the price table does not know; ``allow_unpriced``
            records unknown prices as an explicit $0 instead of raising.
        on_error: ``"raise"`` (default) or ``"skip"`` a cell whose call or scoring fails (it is not retried in
            this session; a resumed session tries it again).
        name: the dataset name.
        executor: where the cells of a batch are labelled: ``None`` (here, one after another) or an object
            with ``label_cells(builder, ledger, cells)`` such as :class:`rag_routing.ray_jobs.RayCellExecutor`
            (a Ray cluster; the same table and ledger entries as here).
    """

    def __init__(self, queries: Sequence[str], candidates: Mapping[str, Any], scorer: AnswerScorer, *,
                 references: Sequence[Sequence[str] | str | None] | None = None,
                 metadata: Sequence[Mapping[str, Any]] | None = None, path: str | Path | None = None,
                 system: str | None = None, max_tokens: int = 256, pricing: Mapping[str, Pricing] | None = None,
                 allow_unpriced: bool | None = None, on_error: str = "raise", name: str = "labels",
                 executor: Any = None):
        from rag_routing.routers.judges.llm_client import LLMClient

        rows = _query_list(queries)
        if not isinstance(candidates, Mapping) or not candidates:
            raise InvalidInputError("candidates must be a non-empty mapping {name: model}")
        if not isinstance(scorer, AnswerScorer):
            raise InvalidInputError(f"scorer must be an AnswerScorer, got {type(scorer).__name__}")
        check_choice("on_error", on_error, ("raise", "skip"))
        prices = dict(pricing or {})
        unknown = sorted(set(prices) - set(candidates))
        if unknown:
            raise InvalidInputError(f"pricing names unknown candidates {unknown}")
        self.clients = {}
        for key, model in candidates.items():
            if isinstance(model, LLMClient):
                client = model.with_component(LABEL_GENERATION_STAGE, str(key))
            else:
                client = LLMClient(model, pricing=prices.get(key), allow_unpriced=allow_unpriced,
                                   stage=LABEL_GENERATION_STAGE, component=str(key))
            self.clients[str(key)] = client
        self.scorer, self.system, self.max_tokens, self.on_error = scorer, system, int(max_tokens), on_error
        self.labeler = CellLabeler(self.clients, scorer, system, self.max_tokens)
        if executor is not None and not callable(getattr(executor, "label_cells", None)):
            raise InvalidInputError(f"executor must have label_cells(builder, ledger, cells), got {executor!r}")
        self.executor = executor
        self.path = None if path is None else Path(path)
        self.ledger = CostLedger()  # used only when no ambient ledger is open
        self._table = self._empty_table(rows, references, metadata, name)
        if self.path is not None and self.path.exists():
            self._merge(self.path)
        self.failed_ = np.zeros(self._table.quality.shape, dtype=bool)

    @classmethod
    def from_jsonl(cls, path: str | Path, candidates: Mapping[str, Any], scorer: AnswerScorer,
                   **kwargs: Any) -> RoutingDataBuilder:
        """Resume the table at ``path`` (its queries, references and metadata); ``candidates`` may add columns."""
        from rag_routing.evaluation.loaders.jsonl import load_jsonl

        existing = load_jsonl(path)
        return cls(existing.queries, candidates, scorer, metadata=existing.metadata, path=path,
                   name=kwargs.pop("name", existing.name), **kwargs)

    # -- the table ----------------------------------------------------------------------------------------
    def _empty_table(self, rows: list[str], references: Sequence[Any] | None,
                     metadata: Sequence[Mapping[str, Any]] | None, name: str) -> RoutingDataset:
        n, m = len(rows), len(self.clients)
        meta = [dict(row) for row in metadata] if metadata is not None else [{} for _ in rows]
        if len(meta) != n:
            raise InvalidInputError(f"{len(meta)} metadata rows for {n} queries")
        if references is not None:
            if len(references) != n:
                raise InvalidInputError(f"{len(references)} reference rows for {n} queries")
            for row, refs in zip(meta, references):
                if refs is not None:
                    row["references"] = [refs] if isinstance(refs, str) else [str(r) for r in refs]
        return RoutingDataset(queries=rows, candidates=list(self.clients), quality=np.full((n, m), np.nan),
                              cost=np.full((n, m), np.nan), metadata=meta, name=name, cost_source="ledger",
                              responses=[[None] * m for _ in range(n)])

    def _merge(self, path: Path) -> None:
        from rag_routing.evaluation.loaders.jsonl import load_jsonl

        old = load_jsonl(path)
        rows = {q: i for i, q in enumerate(self._table.queries)}
        lost_rows = [q for q in old.queries if q not in rows]
        lost_cols = [c for c in old.candidates if c not in self.clients]
        if lost_rows or lost_cols:
            raise InvalidInputError(f"{path} holds {len(lost_rows)} queries and candidates {lost_cols} that this "
                                    "builder lacks; resuming would drop their labels (pass them, or another path)")
        at = np.array([rows[q] for q in old.queries])
        cols = np.array([self._table.candidate_index(c) for c in old.candidates])
        self._table.quality[np.ix_(at, cols)] = old.quality
        self._table.cost[np.ix_(at, cols)] = old.cost
        responses = self._table.responses
        assert responses is not None
        for r, i in enumerate(at):
            meta = old.metadata[r]
            self._table.metadata[i] = {**meta, **self._table.metadata[i]}  # references given now win
            if old.responses is not None:
                for c, j in enumerate(cols):
                    if old.responses[r][c] is not None:
                        responses[i][j] = old.responses[r][c]

    @property
    def dataset(self) -> RoutingDataset:
        """A copy of the table so far (NaN quality = not labelled)."""
        t = self._table
        return replace(t, quality=t.quality.copy(), cost=t.cost.copy(), metadata=[dict(m) for m in t.metadata],
                       responses=[list(r) for r in t.responses] if t.responses is not None else None)

    def is_labelled(self) -> np.ndarray:
        """``(n_queries, n_candidates)`` True where the quality is known."""
        return ~np.isnan(self._table.quality)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the table as generic JSONL (atomically) to ``path`` or the builder's path."""
        from rag_routing.evaluation.loaders.jsonl import write_jsonl

        target = Path(path) if path is not None else self.path
        if target is None:
            raise InvalidInputError("no path: pass save(path) or build with path=...")
        return write_jsonl(self._table, target)

    # -- labelling ----------------------------------------------------------------------------------------
    def _label_one(self, ledger: CostLedger, i: int, j: int) -> LabelOutcome:
        t = self._table
        name = t.candidates[j]
        answer = t.responses[i][j] if t.responses is not None else None
        if answer is None:  # a cell generated earlier but not scored keeps its answer and cost
            answer, cost = self.labeler.generate(t.queries[i], name)
            self.store_answer(i, j, answer, cost)
        quality, judge_usd = self.labeler.score(ledger, t.queries[i], answer, t.metadata[i].get("references"))
        return self.store_quality(i, j, quality, judge_usd)

    def store_answer(self, i: int, j: int, answer: str, cost_usd: float) -> None:
        """Keep cell ``(i, j)``'s answer and its call's cost (scored or not: a rescore needs no new call)."""
        responses = self._table.responses
        assert responses is not None
        responses[i][j] = answer
        self._table.cost[i, j] = cost_usd

    def store_quality(self, i: int, j: int, quality: float, judge_usd: float) -> LabelOutcome:
        """Label cell ``(i, j)`` (its answer is stored already) and return the outcome."""
        t = self._table
        t.quality[i, j] = quality
        answer = t.responses[i][j] if t.responses is not None else ""
        return LabelOutcome(i, t.candidates[j], answer or "", quality, float(t.cost[i, j]), judge_usd)

    def cell_failed(self, i: int, j: int, error: BaseException) -> None:
        """A cell's call or scoring failed: raise (``on_error="raise"``) or mark it and go on (``"skip"``)."""
        if self.on_error == "raise":
            raise error
        self.failed_[i, j] = True
        logger.warning("labelling query %d with %r failed: %s", i, self._table.candidates[j], error)

    def cell_payload(self, i: int, j: int) -> tuple[int, int, str, str, Any, str | None, float]:
        """What a worker needs to label cell ``(i, j)`` elsewhere: indices, query, candidate, references and
        an answer generated earlier (with its cost) or ``None``."""
        t = self._table
        answer = t.responses[i][j] if t.responses is not None else None
        return (i, j, t.queries[i], t.candidates[j], t.metadata[i].get("references"), answer, float(t.cost[i, j]))

    def label(self, cells: Iterable[tuple[int, int]]) -> list[LabelOutcome]:
        """Label ``cells`` (``(query_index, candidate_index)``; labelled ones are skipped) and save the table.

        :class:`~rag_routing.errors.BudgetExceededError` (the ledger refused a call) propagates after saving;
        other failures raise or skip the cell (``on_error``).
        """
        pairs = [(int(i), int(j)) for i, j in cells]
        n, m = self._table.quality.shape
        bad = [(i, j) for i, j in pairs if not (0 <= i < n and 0 <= j < m)]
        if bad:
            raise InvalidInputError(f"cells {bad[:3]} are outside the {n} x {m} table")
        todo = [(i, j) for i, j in dict.fromkeys(pairs) if np.isnan(self._table.quality[i, j])]
        ambient = current_ledger()
        ledger = ambient if ambient is not None else self.ledger
        outcomes: list[LabelOutcome] = []
        with nullcontext() if ambient is not None else ledger_scope(ledger):
            try:
                if self.executor is not None:
                    outcomes = list(self.executor.label_cells(self, ledger, todo))
                for i, j in todo if self.executor is None else ():
                    try:
                        outcomes.append(self._label_one(ledger, i, j))
                    except BudgetExceededError:
                        raise
                    except Exception as exc:
                        self.cell_failed(i, j, exc)
            finally:
                if self.path is not None:
                    self.save()
        return outcomes

    def _in_order(self, n: int) -> list[tuple[int, int]]:
        rows, cols = np.nonzero(np.isnan(self._table.quality) & ~self.failed_)
        return list(zip(rows[:n].tolist(), cols[:n].tolist()))

    def run(self, sampler: Any = None, *, max_labels: int | None = None, batch_size: int = 16) -> LabelingRun:
        """Label batch after batch: ``sampler.next_batch`` chooses each (``None``: row by row, every cell),
        until nothing is left, ``max_labels`` cells were labelled, or the ledger's budget refuses a call."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if max_labels is not None and (isinstance(max_labels, bool) or not isinstance(max_labels, int)
                                       or max_labels < 0):
            raise InvalidInputError(f"max_labels must be an integer >= 0 or None, got {max_labels!r}")
        ambient = current_ledger()
        ledger = ambient if ambient is not None else self.ledger
        first, started, labelled, stopped = len(ledger), time.perf_counter(), 0, "done"
        failed_before = int(self.failed_.sum())
        while True:
            room = batch_size if max_labels is None else min(batch_size, max_labels - labelled)
            if room <= 0:
                stopped = "max_labels"
                break
            if sampler is None:
                cells = self._in_order(room)
            else:
                cells = sampler.next_batch(self.dataset, room, exclude=self.failed_)
            if not cells:
                break
            failures = int(self.failed_.sum())
            try:
                done = self.label(cells)
            except BudgetExceededError:
                stopped = "budget"
                break
            labelled += len(done)
            if not done and int(self.failed_.sum()) == failures:
                stopped = "stalled"
                break
        entries = ledger.entries[first:]
        spend = {stage: math.fsum(e.cost_usd for e in entries if e.stage == stage)
                 for stage in (LABEL_GENERATION_STAGE, LABEL_JUDGE_STAGE)}
        return LabelingRun(labelled=labelled, failed=int(self.failed_.sum()) - failed_before,
                           remaining=int((np.isnan(self._table.quality) & ~self.failed_).sum()),
                           generation_usd=spend[LABEL_GENERATION_STAGE], judge_usd=spend[LABEL_JUDGE_STAGE],
                           seconds=time.perf_counter() - started, stopped=stopped, path=self.path)


__all__ = ["RoutingDataBuilder", "CellLabeler", "LabelOutcome", "LabelingRun", "LABEL_GENERATION_STAGE"]
