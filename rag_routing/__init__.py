"""rag_routing: route every stage of a RAG pipeline to the cheapest component that still answers well.

Every router estimates a quality matrix ``S`` and a cost matrix ``C`` and picks
``argmax_M S[q, M] - λ·C[q, M]`` subject to ``C[q, M] <= B`` (:func:`rag_routing.select`). Every stage records
into one :class:`CostLedger`.

Public names are imported lazily (PEP 562), so ``import rag_routing`` loads neither a framework (LangChain,
LlamaIndex) nor a heavy library (torch, faiss).
"""

from __future__ import annotations

from rag_routing.lazy_exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # errors
    "RagRoutingError": "rag_routing.errors",
    "InvalidInputError": "rag_routing.errors",
    "UnknownCandidateError": "rag_routing.errors",
    "DatasetFormatError": "rag_routing.errors",
    "MissingDescriptionError": "rag_routing.errors",
    "NotFittedError": "rag_routing.errors",
    "NoRouteError": "rag_routing.errors",
    "BudgetExceededError": "rag_routing.errors",
    "UnknownPriceError": "rag_routing.errors",
    "CorruptStateError": "rag_routing.errors",
    "MissingDependencyError": "rag_routing.errors",
    "SandboxUnavailableError": "rag_routing.errors",
    "ModelNotAllowedError": "rag_routing.errors",
    # candidates and the decision rule
    "Candidate": "rag_routing.candidates",
    "CandidatePool": "rag_routing.candidates",
    "Pricing": "rag_routing.candidates",
    "RoutingDecision": "rag_routing.decision",
    "select": "rag_routing.decision",
    "decide": "rag_routing.decision",
    "calibrate": "rag_routing.decision",
    "calibrate_threshold": "rag_routing.decision",
    # ledger
    "CostLedger": "rag_routing.ledger",
    "LedgerEntry": "rag_routing.ledger",
    "ledger_scope": "rag_routing.ledger",
    "current_ledger": "rag_routing.ledger",
    "Budget": "rag_routing.ledger",
    "PriceTable": "rag_routing.ledger",
    "EnergyModel": "rag_routing.ledger",
    "count_tokens": "rag_routing.ledger",
    "SQLiteStore": "rag_routing.ledger",
    "MemoryStore": "rag_routing.ledger",
    "RedisLedgerStore": "rag_routing.ledger",
    "RedisBudgetStore": "rag_routing.ledger",
    "GuardedRouter": "rag_routing.security",
    "NewKeyPool": "rag_routing.security",
    # featurizers
    "SentenceTransformerEmbedder": "rag_routing.embeddings",
    "OnnxMiniLMEmbedder": "rag_routing.onnx_embedding",
    "TfidfFeaturizer": "rag_routing.embeddings",
    "EmbeddingCache": "rag_routing.embeddings",
    # datasets and evaluation
    "RoutingDataset": "rag_routing.evaluation.dataset",
    # routers
    "Router": "rag_routing.routers.base",
    "load_router": "rag_routing.routers.base",
    "create_router": "rag_routing.routers.registry",
    "available_routers": "rag_routing.routers.registry",
    "register_router": "rag_routing.routers.registry",
    "RandomRouter": "rag_routing.routers.baselines",
    "OracleRouter": "rag_routing.routers.baselines",
    "BestSingleRouter": "rag_routing.routers.baselines",
    "CheapestRouter": "rag_routing.routers.baselines",
    "FixedRouter": "rag_routing.routers.baselines",
    "AutoRouter": "rag_routing.routers.auto",
    "GuardSettings": "rag_routing.routers.support",
    "SupportEstimator": "rag_routing.routers.support",
    "force_prior": "rag_routing.routers.support",
    "DriftMonitor": "rag_routing.routers.drift",
    "DriftAlarm": "rag_routing.routers.drift",
    "JudgeCalibration": "rag_routing.routers.cascade_guard",
    "KNNRouter": "rag_routing.routers.similarity",
    "ClusterRouter": "rag_routing.routers.similarity",
    "SWRankingRouter": "rag_routing.routers.preference",
    "EloRouter": "rag_routing.routers.preference",
    "MatrixFactorizationRouter": "rag_routing.routers.supervised",
    "ClassifierRouter": "rag_routing.routers.supervised",
    "QualityRegressor": "rag_routing.routers.supervised",
    "ConditionalRouter": "rag_routing.routers.rules",
    "SemanticRouter": "rag_routing.routers.semantic",
    "EncoderClassifierRouter": "rag_routing.routers.encoder",
    "ContrastiveRouter": "rag_routing.routers.contrastive",
    "GraphRouter": "rag_routing.routers.graph",
    "EpsilonGreedyRouter": "rag_routing.routers.bandits",
    "LinearRewardInactionRouter": "rag_routing.routers.bandits",
    "LinUCBRouter": "rag_routing.routers.bandits",
    "ThompsonRouter": "rag_routing.routers.bandits",
    "SessionRouter": "rag_routing.session",
    "CascadeRouter": "rag_routing.routers.cascade",
    "MultiChoiceCascade": "rag_routing.routers.multi_cascade",
    "VoteCascade": "rag_routing.routers.vote_cascade",
    "PromptRouter": "rag_routing.routers.generative",
    "TokenMarginJudge": "rag_routing.routers.judges",
    "SequenceProbabilityJudge": "rag_routing.routers.judges",
    "VerbalizedConfidenceJudge": "rag_routing.routers.judges",
    "SelfVerificationJudge": "rag_routing.routers.judges",
    "ConsistencyJudge": "rag_routing.routers.judges",
    "CodeExecutionJudge": "rag_routing.routers.judges",
    "AnswerScorerJudge": "rag_routing.routers.judges",
    "AgreementJudge": "rag_routing.routers.judges",
    # evaluation
    "load_dataset": "rag_routing.evaluation.loaders",
    "write_jsonl": "rag_routing.evaluation.loaders",
    "run_benchmark": "rag_routing.evaluation.benchmark",
    "replay": "rag_routing.evaluation.replay",
    "evaluate_policy": "rag_routing.evaluation.off_policy",
    "RoutingDataBuilder": "rag_routing.evaluation.labeling",
    "DecisionValueSampler": "rag_routing.evaluation.active_sampling",
    # stages
    "RAGState": "rag_routing.stages",
    "StageRouter": "rag_routing.stages",
    "RoutedRAG": "rag_routing.stages",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
