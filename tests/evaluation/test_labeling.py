"""RoutingDataBuilder: local scripted generators and a fake paid chat model through the ledger, JSONL that
loads back identically and that ``rag-routing bench`` reads, resuming, budgets, failures; the ``label`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag_routing.candidates import Pricing
from rag_routing.cli import main
from rag_routing.errors import InvalidInputError, JudgeReplyError
from rag_routing.evaluation.active_sampling import DecisionValueSampler
from rag_routing.evaluation.answer_scorers import LABEL_JUDGE_STAGE, ExactMatchScorer, LLMJudgeScorer, TokenF1Scorer
from rag_routing.evaluation.labeling import LABEL_GENERATION_STAGE, RoutingDataBuilder
from rag_routing.evaluation.loaders import detect_format, load_dataset
from rag_routing.evaluation.loaders.jsonl import load_jsonl
from rag_routing.evaluation.quality_posterior import NeighbourPosterior
from rag_routing.ledger import Budget, ledger_scope
from rag_routing.llms import LocalLLM
from rag_routing.llms.scripted import scripted_model
from rag_routing.routers.judges.llm_client import LLMClient

QUERIES = ["Capital of Peru?", "Capital of France?", "Author of Faust?"]
REFERENCES = [["Lima"], ["Paris"], ["Goethe", "Johann Wolfgang von Goethe"]]
FREE = Pricing(input_per_mtok=0.0, output_per_mtok=0.0)


class CountingModel:
    """A plain callable candidate that answers from a table and counts its calls."""

    def __init__(self, answers: dict[str, str], default: str = "I do not know"):
        self.answers, self.default, self.calls = answers, default, []

    def __call__(self, prompt: str) -> str:
        self.calls.append(prompt)
        return next((a for q, a in self.answers.items() if q in prompt), self.default)


def _paid_chat(*replies: str):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    return GenericFakeChatModel(messages=iter([AIMessage(content=r, usage_metadata={
        "input_tokens": 20, "output_tokens": 4, "total_tokens": 24}) for r in replies]))


def test_builder_with_local_and_paid_generators_writes_jsonl_that_loads_back(tmp_path):
    lima = LocalLLM(scripted_model("Lima", folder=tmp_path / "lima"))
    paris = LocalLLM(scripted_model("Paris", folder=tmp_path / "paris"))
    paid = LLMClient(_paid_chat("Lima", "Paris", "Goethe"), model="gpt-4o-mini")  # a chat model named for its price
    path = tmp_path / "labels.jsonl"
    builder = RoutingDataBuilder(QUERIES, {"lima": lima, "paris": paris, "gpt-4o-mini": paid}, TokenF1Scorer(),
                                 references=REFERENCES, path=path, max_tokens=8)
    with ledger_scope() as ledger:
        run = builder.run(batch_size=4)
    assert run.stopped == "done" and run.labelled == 9 and run.remaining == 0
    table = builder.dataset
    assert table.quality.tolist() == [[1, 0, 1], [0, 1, 1], [0, 0, 1]]
    paid_cost = (20 * 0.15 + 4 * 0.6) / 1e6
    assert np.allclose(table.cost[:, 2], paid_cost) and (table.cost[:, :2] == 0.0).all()  # local: an explicit $0
    generation = [e for e in ledger.entries if e.stage == LABEL_GENERATION_STAGE]
    assert len(generation) == 9 and {e.component for e in generation} == {"lima", "paris", "gpt-4o-mini"}
    assert run.generation_usd == pytest.approx(3 * paid_cost) and run.judge_usd == 0.0
    assert table.responses[2][2] == "Goethe" and table.metadata[2]["references"] == REFERENCES[2]
    # the file is the generic JSONL: it loads back identically and bench's loader detects and reads it
    back = load_jsonl(path)
    assert back.queries == QUERIES and back.candidates == table.candidates
    assert np.array_equal(back.quality, table.quality) and np.array_equal(back.cost, table.cost)
    assert back.responses == table.responses and back.metadata == table.metadata
    assert detect_format(path) == "jsonl" and load_dataset(path).cost_source == "file"


def test_partial_labels_stay_nan_and_the_judge_is_billed_apart(tmp_path):
    model = CountingModel({"Peru": "Lima", "France": "Paris"})
    judge = LLMJudgeScorer(_paid_chat("Score: 10", "Score: 2"), model="gpt-4o-mini")
    builder = RoutingDataBuilder(QUERIES, {"a": model, "b": CountingModel({})}, judge, references=REFERENCES,
                                 pricing={"a": Pricing(input_per_mtok=1.0, output_per_mtok=1.0), "b": FREE},
                                 path=tmp_path / "part.jsonl")
    with ledger_scope() as ledger:
        outcomes = builder.label([(0, 0), (2, 1)])
    assert [o.quality for o in outcomes] == [1.0, 0.2]
    assert outcomes[0].judge_cost_usd == pytest.approx((20 * 0.15 + 4 * 0.6) / 1e6)
    assert outcomes[0].cost_usd > 0 and outcomes[1].cost_usd == 0.0
    assert {e.stage for e in ledger.entries} == {LABEL_GENERATION_STAGE, LABEL_JUDGE_STAGE}
    back = load_jsonl(tmp_path / "part.jsonl")
    assert np.isnan(back.quality).sum() == 4 and np.isnan(back.cost).sum() == 4  # unknown, never 0
    assert back.quality[0, 0] == 1.0 and back.quality[2, 1] == pytest.approx(0.2)


def test_resume_keeps_labels_and_does_not_call_a_candidate_twice(tmp_path):
    path = tmp_path / "resume.jsonl"
    first = CountingModel({"Peru": "Lima"})
    builder = RoutingDataBuilder(QUERIES, {"a": first, "b": CountingModel({})}, ExactMatchScorer(),
                                 references=REFERENCES, pricing={"a": FREE, "b": FREE}, path=path)
    assert builder.run(max_labels=3, batch_size=2).stopped == "max_labels"
    assert len(first.calls) == 2                                    # cells (0, a), (0, b), (1, a) in row order
    again = CountingModel({"Peru": "Lima", "France": "Paris"})
    resumed = RoutingDataBuilder.from_jsonl(path, {"a": again, "b": CountingModel({}), "c": CountingModel({})},
                                            ExactMatchScorer(), pricing={"a": FREE, "b": FREE, "c": FREE})
    assert resumed.is_labelled().sum() == 3 and resumed.dataset.candidates == ["a", "b", "c"]  # a new column
    assert resumed.dataset.metadata[0]["references"] == ["Lima"]
    run = resumed.run()
    assert run.labelled == 6 and not any("Peru" in p or "France" in p for p in again.calls)
    assert load_jsonl(path).quality[:, 0].tolist() == [1.0, 0.0, 0.0]  # first session's answers kept
    with pytest.raises(InvalidInputError, match="drop their labels"):
        RoutingDataBuilder(QUERIES, {"a": again}, ExactMatchScorer(), references=REFERENCES, path=path,
                           pricing={"a": FREE})


def test_an_unreadable_judge_reply_keeps_the_answer_for_a_rescore(tmp_path):
    path = tmp_path / "judge.jsonl"
    model = CountingModel({"Peru": "Lima"})
    builder = RoutingDataBuilder(QUERIES[:1], {"a": model}, LLMJudgeScorer(_paid_chat("no idea"), model="gpt-4o"),
                                 references=REFERENCES[:1], pricing={"a": FREE}, path=path)
    with pytest.raises(JudgeReplyError):
        builder.label([(0, 0)])
    saved = load_jsonl(path)
    assert np.isnan(saved.quality[0, 0]) and saved.responses[0][0] == "Lima" and saved.cost[0, 0] == 0.0
    rescored = RoutingDataBuilder.from_jsonl(path, {"a": model}, ExactMatchScorer(), pricing={"a": FREE})
    assert rescored.label([(0, 0)])[0].quality == 1.0 and len(model.calls) == 1   # scored, not re-generated


def test_budget_stops_labelling_before_the_call_and_failures_can_be_skipped(tmp_path):
    dear = CountingModel({"Peru": "Lima"})
    builder = RoutingDataBuilder(QUERIES, {"dear": dear}, ExactMatchScorer(), references=REFERENCES,
                                 pricing={"dear": Pricing(input_per_mtok=1000.0, output_per_mtok=1000.0)},
                                 max_tokens=4, path=tmp_path / "budget.jsonl")
    with ledger_scope(budget=Budget(max_usd=0.012)) as ledger:   # a call reserves ~$0.009 (prompt + 4 tokens)
        run = builder.run(batch_size=1)
    assert run.stopped == "budget" and 1 <= run.labelled < 3 and len(dear.calls) == run.labelled
    assert ledger.totals()["cost_usd"] <= 0.012
    assert load_jsonl(tmp_path / "budget.jsonl").quality[0, 0] == 1.0

    def broken(prompt: str) -> str:
        raise ConnectionError("provider down")

    skipping = RoutingDataBuilder(QUERIES, {"ok": CountingModel({}), "down": broken}, ExactMatchScorer(),
                                  references=REFERENCES, pricing={"ok": FREE, "down": FREE}, on_error="skip")
    run = skipping.run()
    assert (run.labelled, run.failed, run.remaining, run.stopped) == (3, 3, 0, "done")
    with pytest.raises(ConnectionError):
        RoutingDataBuilder(QUERIES, {"down": broken}, ExactMatchScorer(), references=REFERENCES,
                           pricing={"down": FREE}).label([(0, 0)])


def test_builder_checks_its_input():
    with pytest.raises(InvalidInputError, match="distinct"):
        RoutingDataBuilder(["q?", "q?"], {"a": CountingModel({})}, ExactMatchScorer())
    with pytest.raises(InvalidInputError, match="AnswerScorer"):
        RoutingDataBuilder(["q?"], {"a": CountingModel({})}, lambda q, a, r: 1.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="reference rows"):
        RoutingDataBuilder(["q?"], {"a": CountingModel({})}, ExactMatchScorer(), references=[["x"], ["y"]])
    builder = RoutingDataBuilder(["q?"], {"a": CountingModel({})}, ExactMatchScorer(), pricing={"a": FREE})
    with pytest.raises(InvalidInputError, match="outside"):
        builder.label([(1, 0)])
    with pytest.raises(InvalidInputError, match="reference"):  # EM without references: an error, not a 0
        builder.label([(0, 0)])


def test_active_run_labels_only_what_the_sampler_chooses(tmp_path):
    queries = [f"What is {a} plus {b}?" for a in range(6) for b in range(4)]
    answers = [[str(a + b)] for a in range(6) for b in range(4)]
    right = CountingModel({q: a[0] for q, a in zip(queries, answers)})
    builder = RoutingDataBuilder(queries, {"right": right, "wrong": CountingModel({}), "other": CountingModel({})},
                                 ExactMatchScorer(), references=answers,
                                 pricing={"right": FREE, "wrong": FREE, "other": FREE})
    sampler = DecisionValueSampler(NeighbourPosterior(k=5, featurizer="tfidf"), seed=0)
    run = builder.run(sampler, max_labels=20, batch_size=7)
    assert run.labelled == 20 and builder.is_labelled().sum() == 20 and run.stopped == "max_labels"
    assert builder.is_labelled().sum(axis=0).min() >= 2             # the cold start reached every candidate


def test_label_command_with_a_scripted_local_model_then_bench_reads_the_file(tmp_path, capsys):
    queries = tmp_path / "queries.jsonl"
    rows = [{"query": f"Which city is the capital, case {i}?", "answers": ["Lima"] if i % 2 else ["Paris"],
             "meta": {"case": i}} for i in range(12)]
    queries.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    lima, paris = scripted_model("Lima", folder=tmp_path / "l"), scripted_model("Paris", folder=tmp_path / "p")
    out = tmp_path / "routing.jsonl"
    args = ["label", str(queries), "--candidate", f"lima={lima}", "--candidate", f"paris={paris}@gpt-4o-mini",
            "--out", str(out), "--scorer", "em", "--max-tokens", "6", "--quiet"]
    assert main(args + ["--max-labels", "5"]) == 0
    assert "labelled 5 cells" in capsys.readouterr().out
    assert main(args + ["--sampler", "decision_value", "--featurizer", "tfidf", "--batch-size", "4"]) == 0
    printed = capsys.readouterr().out
    assert "labelled 19 cells (5 before, 24 of 24 now" in printed and "label_generation" in printed
    data = load_jsonl(out)
    assert data.quality[:, 0].tolist() == [float(i % 2) for i in range(12)]
    assert (data.cost[:, 1] > 0).all() and (data.cost[:, 0] == 0).all()   # priced as gpt-4o-mini vs local $0
    assert data.metadata[3] == {"case": 3, "references": ["Lima"]}
    assert main(["bench", str(out), "--routers", "knn", "--embedder", "tfidf", "--quiet", "--test-size", "0.5"]) == 0
    assert "knn" in capsys.readouterr().out


def test_label_command_errors_exit_2(tmp_path, capsys):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "hi", "answers": ["hello"]}\n')
    base = ["label", str(queries), "--out", str(tmp_path / "o.jsonl"), "--quiet"]
    assert main(base + ["--candidate", "nameless"]) == 2
    assert "NAME=SPEC" in capsys.readouterr().err
    assert main(base + ["--candidate", "a=local@no-such-model-xyz"]) == 2
    assert "no list price" in capsys.readouterr().err
    assert main(base + ["--candidate", "a=local", "--scorer", "llm_judge"]) == 2
    assert "--judge" in capsys.readouterr().err
    queries.write_text('{"query": "hi", "answers": [1, 2]}\n')
    assert main(base + ["--candidate", "a=local"]) == 2
    assert "list of strings" in capsys.readouterr().err


def test_label_command_with_a_judge_billed_at_a_list_price(tmp_path, capsys):
    queries = tmp_path / "queries.jsonl"
    queries.write_text('{"query": "Capital of Peru?", "answer": "Lima"}\n{"query": "Capital of Chad?", '
                       '"answer": "N\'Djamena"}\n')
    lima = scripted_model("Lima", folder=tmp_path / "l")
    judge = scripted_model("Score: 9", folder=tmp_path / "j")
    out = tmp_path / "judged.jsonl"
    assert main(["label", str(queries), "--candidate", f"lima={lima}", "--scorer", "llm_judge",
                 "--judge", f"{judge}@gpt-4o-mini", "--out", str(out), "--max-tokens", "6", "--quiet"]) == 0
    printed = capsys.readouterr().out
    judging = float(printed.split("judging $")[1].split()[0])
    assert judging > 0 and "candidates $0.000000" in printed and "label_judge" in printed
    assert load_jsonl(out).quality[:, 0].tolist() == [0.9, 0.9]


def test_labelling_names_are_exported_lazily():
    import rag_routing
    import rag_routing.evaluation as evaluation

    names = ["RoutingDataBuilder", "LLMJudgeScorer", "SemanticSimilarityScorer", "DecisionValueSampler",
             "UncertaintySampler", "RandomSampler", "NeighbourPosterior", "BootstrapPosterior", "make_sampler"]
    assert all(getattr(evaluation, name) is not None for name in names)
    assert rag_routing.RoutingDataBuilder is RoutingDataBuilder
