"""GraphRouter (Feng et al. 2025): learning, a candidate added from its description, persistence, determinism,
errors, the graph attention layer, and the shipped description table."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from rag_routing.descriptions import builtin_descriptions, describe, require_descriptions  # noqa: E402
from rag_routing.embeddings import PrecomputedFeaturizer  # noqa: E402
from rag_routing.errors import (InvalidInputError, MissingDescriptionError, NotFittedError,  # noqa: E402
                                UnknownCandidateError)
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.routers.base import load_router  # noqa: E402
from rag_routing.routers.graph import GraphRouter  # noqa: E402
from rag_routing.routers.registry import available_routers, create_router  # noqa: E402

FAST = {"featurizer": "tfidf", "steps": 60, "lr": 5e-3, "hidden": 16}
MATHS_TEXT = "solves the integral, strong at maths"
CHAT_TEXT = "says hello to a friend, strong at chat"
QUERIES = ["solve the integral of x^77 times sin(x) dx", "say hello to my good friend number 77 today"]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def specialists() -> RoutingDataset:
    """Four maths specialists (right on maths, wrong on chat) and four chat specialists; same price; the
    descriptions say which is which."""
    maths = [f"solve the integral of x^{i} times sin(x) dx" for i in range(30)]
    chat = [f"say hello to my good friend number {i} today" for i in range(30)]
    names = [f"m{i}" for i in range(4)] + [f"c{i}" for i in range(4)]
    quality = np.array([[1.0] * 4 + [0.0] * 4] * 30 + [[0.0] * 4 + [1.0] * 4] * 30)
    meta = [{"task": "maths"}] * 30 + [{"task": "chat"}] * 30
    return RoutingDataset(maths + chat, names, quality, np.full((60, 8), 0.01), metadata=meta, name="specialists")


@pytest.fixture(scope="module")
def descriptions() -> dict[str, str]:
    out = {f"m{i}": f"model {i}: {MATHS_TEXT}" for i in range(4)}
    out.update({f"c{i}": f"model {i}: {CHAT_TEXT}" for i in range(4)})
    return out


@pytest.fixture(scope="module")
def fitted(specialists, descriptions) -> GraphRouter:
    return GraphRouter(descriptions=descriptions, **FAST).fit(specialists)


def _copy(router: GraphRouter, tmp_path, name: str = "graph.npz") -> GraphRouter:
    return load_router(router.save(tmp_path / name))


def test_learns_specialists_with_shapes_from_every_input(fitted, specialists):
    S = fitted.predict_quality(QUERIES)
    assert S.shape == (2, 8) and np.isfinite(S).all() and ((S >= 0) & (S <= 1)).all()
    assert (S[0, :4].min() > S[0, 4:].max()) and (S[1, 4:].min() > S[1, :4].max())
    assert fitted.predict_quality(specialists).shape == (60, 8)
    assert fitted.predict_quality(fitted.featurizer_.transform(QUERIES)).shape == (2, 8)
    assert fitted.predict_quality(QUERIES[0]).shape == (1, 8)
    assert fitted.task_key_ == "task" and fitted.task_names_ == ["chat", "maths"]
    # New queries only receive messages: a query's estimate does not depend on the rest of its batch.
    assert np.allclose(fitted.predict_quality(QUERIES[:1]), S[:1], atol=1e-6)


def test_new_candidate_from_its_description_changes_routing(fitted, tmp_path):
    router = _copy(fitted, tmp_path)
    for i in range(4):
        router.remove_candidate(f"m{i}")
    assert router.route_indices(QUERIES, lam=0.0).tolist()[1] < 4  # chat goes to a chat specialist
    assert router.predict_quality(QUERIES)[0].max() < 0.5          # nobody left is good at maths
    router.add_candidate("newcomer", description=f"model 9: {MATHS_TEXT}", cost=0.01)
    assert router.candidates_[-1] == "newcomer" and router.mean_cost_[-1] == pytest.approx(0.01)
    S = router.predict_quality(QUERIES)
    assert S[0, -1] > 0.5 > S[1, -1]
    assert [d.candidate for d in router.route(QUERIES, lam=0.0)] == ["newcomer", router.candidates_[
        int(np.argmax(S[1]))]] and router.route_one(QUERIES[1]).candidate != "newcomer"
    # The same node with the chat description is scored the other way round.
    router.remove_candidate("newcomer").add_candidate("newcomer", description=f"model 9: {CHAT_TEXT}", cost=0.01)
    S = router.predict_quality(QUERIES)
    assert S[1, -1] > 0.5 > S[0, -1]


def test_new_candidate_from_anchor_outcomes_through_the_pool(specialists, tmp_path):
    """Descriptions that say nothing (as on real data): a few anchor outcomes decide, either way round."""
    from rag_routing.pool import profile_candidate

    generic = {name: f"a general model number {i}" for i, name in enumerate(specialists.candidates)}
    fitted = GraphRouter(descriptions={**generic, "newcomer": "a general model number 9"}, **FAST).fit(specialists)
    anchors = specialists.subset([0, 1, 2, 3, 30, 31, 32, 33])
    for outcomes, good in (([1, 1, 1, np.nan, 0, 0, 0, 0], 0), ([0, 0, 0, 0, 1, np.nan, 1, 1], 1)):
        router = _copy(fitted, tmp_path)
        profile_candidate("newcomer", outcomes, anchors, cost=0.01, routers=[router])
        assert len(router.memory_.features) == 60 + 7  # a NaN outcome is no edge
        S = router.predict_quality(QUERIES)
        assert S[good, -1] > 0.5 > S[1 - good, -1]
        assert np.allclose(_copy(router, tmp_path, "anchored.npz").predict_quality(QUERIES), S, atol=1e-6)
    router.remove_candidate("newcomer")
    assert len(router.memory_.features) == 60 and router.memory_.neighbours.max() < 60
    with pytest.raises(InvalidInputError, match="queries"):
        router.add_candidate("x", [1.0], description=MATHS_TEXT, cost=0.01)
    with pytest.raises(InvalidInputError, match="2 outcomes for 1 queries"):
        router.add_candidate("x", [1.0, 0.0], QUERIES[:1], description=MATHS_TEXT, cost=0.01)
    with pytest.raises(InvalidInputError, match="finite"):
        router.add_candidate("x", [np.nan], QUERIES[:1], description=MATHS_TEXT, cost=0.01)
    assert "x" not in router.candidates_ and len(router.candidates_) == len(router.memory_.candidate_text)


def test_save_load_round_trip_keeps_added_candidates(fitted, tmp_path):
    router = _copy(fitted, tmp_path, "a.npz").add_candidate("newcomer", description=MATHS_TEXT, cost=0.02)
    loaded = _copy(router, tmp_path, "b.npz")
    assert isinstance(loaded, GraphRouter) and loaded.candidates_ == router.candidates_
    assert loaded.descriptions_["newcomer"] == MATHS_TEXT and loaded.task_names_ == router.task_names_
    assert np.allclose(loaded.predict_quality(QUERIES), router.predict_quality(QUERIES), atol=1e-6)
    assert np.allclose(loaded.predict_cost(QUERIES), router.predict_cost(QUERIES))
    assert loaded.history_ == pytest.approx(router.history_)


def test_deterministic_under_a_seed(specialists, descriptions, fitted):
    again = GraphRouter(descriptions=descriptions, **FAST).fit(specialists)
    assert np.array_equal(again.predict_quality(QUERIES), fitted.predict_quality(QUERIES))
    other = GraphRouter(descriptions=descriptions, seed=1, **FAST).fit(specialists)
    assert not np.allclose(other.predict_quality(QUERIES), fitted.predict_quality(QUERIES), rtol=0, atol=1e-7)


def test_tasks_are_clusters_without_a_task_field(specialists, descriptions):
    bare = RoutingDataset(specialists.queries, specialists.candidates, specialists.quality, specialists.cost)
    router = GraphRouter(descriptions=descriptions, n_tasks=3, **FAST).fit(bare)
    assert router.task_key_ is None and 2 <= len(router.task_names_) <= 3
    assert router.route_indices(QUERIES, lam=0.0).tolist()[0] < 4
    assert GraphRouter(descriptions=descriptions, task_key=None, **FAST).fit(specialists).task_key_ is None


def test_metadata_task_is_used_for_dataset_inputs(fitted):
    F = fitted.featurizer_.transform(QUERIES)
    assert fitted._task_of(F, QUERIES).tolist() == [1, 0]  # nearest centroid: maths, chat
    swapped = RoutingDataset(QUERIES, ["x"], [[1.0], [1.0]], [[0.0], [0.0]],
                             metadata=[{"task": "chat"}, {"task": "unknown"}])
    assert fitted._task_of(F, swapped).tolist() == [0, 0]   # the field wins; an unknown value falls back


def test_unknown_outcomes_are_not_edges(specialists, descriptions):
    quality = specialists.quality.copy()
    quality[::3, 0] = np.nan
    quality[:, 5] = np.nan  # a candidate never observed is fitted from its description alone
    quality[[1, 40]] = np.nan  # queries without any outcome are left out of the graph
    data = RoutingDataset(specialists.queries, specialists.candidates, quality, specialists.cost,
                          metadata=specialists.metadata)
    router = GraphRouter(descriptions=descriptions, **FAST).fit(data)
    S = router.predict_quality(QUERIES)
    assert np.isfinite(S).all() and S[0, 0] > S[0, 4] and len(router.memory_.features) == 58
    with pytest.raises(InvalidInputError, match="at least 4"):
        GraphRouter(descriptions=descriptions, **FAST).fit(data.subset([0, 1, 2, 3, 40]))


def test_errors(specialists, descriptions, fitted):
    with pytest.raises(NotFittedError):
        GraphRouter(**FAST).predict_quality(QUERIES)
    unknown = GraphRouter(**FAST)
    with pytest.raises(MissingDescriptionError, match=r"m0.*descriptions="):
        unknown.fit(specialists)
    assert not unknown.is_fitted
    with pytest.raises(MissingDescriptionError, match="brand-new"):
        fitted.add_candidate("brand-new", cost=0.01)
    with pytest.raises(InvalidInputError, match="already exists"):
        fitted.add_candidate("m0", description=MATHS_TEXT, cost=0.01)
    with pytest.raises(InvalidInputError, match="cost"):
        fitted.add_candidate("x", description=MATHS_TEXT, cost=-1.0)
    with pytest.raises(UnknownCandidateError):
        fitted.remove_candidate("nope")
    with pytest.raises(UnknownCandidateError):
        fitted.score(QUERIES, strong="nope")
    with pytest.raises(InvalidInputError, match="dimensions"):
        fitted.predict_quality(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="multiple of heads"):
        GraphRouter(hidden=10, heads=3)
    with pytest.raises(InvalidInputError, match="context_fraction"):
        GraphRouter(context_fraction=1.0)
    with pytest.raises(InvalidInputError, match="descriptions"):
        GraphRouter(descriptions={"a": ""})
    with pytest.raises(InvalidInputError, match="task_key 'topic'"):
        GraphRouter(descriptions=descriptions, task_key="topic", **FAST).fit(specialists)
    pre = specialists.with_embeddings(np.eye(60, 8, dtype=np.float32), "mine")
    with pytest.raises(InvalidInputError, match="precomputed"):
        GraphRouter(descriptions=descriptions, featurizer=PrecomputedFeaturizer("mine"), steps=2).fit(pre)


def test_remove_candidate_guards(specialists, descriptions):
    router = GraphRouter(descriptions=descriptions, fallback="c0", **FAST).fit(specialists.select_candidates(
        ["m0", "c0"]))
    with pytest.raises(InvalidInputError, match="fallback"):
        router.remove_candidate("c0")
    router.remove_candidate("m0")
    router.fallback = None
    with pytest.raises(InvalidInputError, match="only candidate"):
        router.remove_candidate("c0")


def test_registry_and_bench_listing():
    from rag_routing.evaluation.benchmark import resolve_routers

    assert "graph" in available_routers()
    router = create_router("graph", steps=5)
    assert isinstance(router, GraphRouter) and router.steps == 5
    assert "graph" not in resolve_routers(["all"])  # needs descriptions: named explicitly
    assert "graph" in resolve_routers(["graph"])


def test_importing_the_router_does_not_load_torch():
    code = "import sys, rag_routing.routers.graph; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_attention_layer_is_order_free_and_normalised():
    import torch

    from rag_routing.routers.graph_network import RELATIONS, HeteroGATLayer, QueryGraph

    torch.manual_seed(0)
    layer = HeteroGATLayer(8, 2, 0.0).eval()
    h = {"query": torch.randn(5, 8), "task": torch.randn(2, 8), "candidate": torch.randn(3, 8)}
    src, dst = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([0, 0, 1, 1, 1, 2])
    edges = {"query_candidate": (src, dst, torch.randn(6, RELATIONS["query_candidate"][2]))}
    out = layer(h, QueryGraph(h, edges, torch.zeros(0)))
    perm = torch.tensor([5, 3, 0, 4, 1, 2])
    shuffled = {"query_candidate": (src[perm], dst[perm], edges["query_candidate"][2][perm])}
    assert torch.allclose(layer(h, QueryGraph(h, shuffled, torch.zeros(0)))["candidate"], out["candidate"], atol=1e-6)
    # A node with no incoming edge is updated from itself only; the same edge twice is the same edge once.
    alone = layer.norm["query"](h["query"] + torch.nn.functional.elu(layer.own["query"](h["query"])))
    assert torch.allclose(out["query"], alone, atol=1e-6)
    twice = {"query_candidate": (torch.tensor([0, 0]), torch.tensor([2, 2]), edges["query_candidate"][2][[5, 5]])}
    once = {"query_candidate": (torch.tensor([0]), torch.tensor([2]), edges["query_candidate"][2][[5]])}
    assert torch.allclose(layer(h, QueryGraph(h, twice, torch.zeros(0)))["candidate"][2],
                          layer(h, QueryGraph(h, once, torch.zeros(0)))["candidate"][2], atol=1e-6)


def test_neighbour_search_matches_a_full_sort():
    from rag_routing.routers.graph_memory import CHUNK, normalise_rows, top_similar

    rng = np.random.default_rng(0)
    memory = normalise_rows(rng.normal(size=(CHUNK + 37, 6)))
    idx, sims = top_similar(memory, memory, 5, exclude_self=True)
    S = memory @ memory.T
    np.fill_diagonal(S, -np.inf)
    expected = np.argsort(-S, axis=1, kind="stable")[:, :5]
    assert np.array_equal(idx, expected) and np.allclose(sims, np.take_along_axis(S, expected, axis=1))
    tied = top_similar(np.ones((1, 2), dtype=np.float32), np.ones((4, 2), dtype=np.float32), 3)[0]
    assert tied.tolist() == [[0, 1, 2]]  # ties: lower index first
    assert top_similar(memory[:2], memory[:1], 3, exclude_self=True)[0].shape == (2, 0)


def test_shipped_descriptions_cover_the_shared_models():
    names = ["WizardLM/WizardLM-13B-V1.2", "claude-instant-v1", "claude-v1", "claude-v2", "gpt-3.5-turbo-1106",
             "gpt-4-1106-preview", "meta/code-llama-instruct-34b-chat", "meta/llama-2-70b-chat",
             "mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat",
             "mistralai/Mixtral-8x7B-Instruct-v0.1", "mistralai/Mistral-7B-v0.1", "meta-math/MetaMath-Mistral-7B",
             "itpossible/Chinese-Mistral-7B-v0.1", "HuggingFaceH4/zephyr-7b-beta",
             "cognitivecomputations/dolphin-2.6-mistral-7b", "meta-llama/Meta-Llama-3-8B",
             "cognitivecomputations/dolphin-2.9-llama3-8b"]
    texts = require_descriptions(names)
    assert len(set(texts)) == len(names) - 1  # the two Mixtral spellings are one model
    assert describe("mistralai/Mixtral-8x7B-Instruct-v0.1") == describe("mixtral-8x7b-chat")
    assert "mixture-of-experts" in describe("mixtral-8x7b-chat") and "math" in describe("MetaMath-Mistral-7B")
    assert len(builtin_descriptions()) == 18
    assert describe("claude-v2", {"claude-v2": "mine"}) == "mine"
    assert describe("anthropic/claude-v2", {"claude-v2": "mine"}) == "mine"
    with pytest.raises(InvalidInputError):
        describe("x", {"x": "  "})
    with pytest.raises(MissingDescriptionError, match=r"\['a', 'b'\]"):
        require_descriptions(["a", "claude-v2", "b"])


@pytest.mark.slow
def test_routerbench_beats_the_single_models_and_adds_gpt4(shared_data):
    """RouterBench ARC + Winogrande with TF-IDF features: above the hull of the single models; GPT-4 held out
    and added from its description gets a node and a finite estimate."""
    from rag_routing.evaluation.benchmark import featurize, load_split
    from rag_routing.evaluation.scorecard import Reference, evaluate_router

    folder = shared_data / "routerbench"
    parts = [load_split(train=folder / f"{t}_train.csv", test=folder / f"{t}_test.csv")
             for t in ("arc_challenge", "winograde")]
    train, test, featurizer = featurize(parts[0][0].concat(parts[1][0]), parts[0][1].concat(parts[1][1]), "tfidf",
                                        progress=False)
    ref = Reference.from_test(test)
    router = GraphRouter(featurizer=featurizer).fit(train)
    assert router.task_key_ == "eval_name"
    assert evaluate_router(router, test, ref).aiq > ref.zero_router_aiq
    gpt4 = "gpt-4-1106-preview"
    small = GraphRouter(featurizer=featurizer, steps=30).fit(train.select_candidates(
        [c for c in train.candidates if c != gpt4]))
    small.add_candidate(gpt4, cost=float(np.nanmean(train.cost[:, train.candidate_index(gpt4)])))
    S = small.predict_quality(test)
    assert S.shape == (len(test), 11) and np.isfinite(S[:, -1]).all()
    assert json.loads(json.dumps(small.descriptions_))[gpt4].startswith("OpenAI GPT-4 Turbo")
