"""Answer judges for cascades: each scores (query, answer[, context]) in [0, 1] and records its own cost.

One judge family per module:

* :mod:`.token_probability` — :class:`TokenMarginJudge` (Ramírez et al. 2024), :class:`SequenceProbabilityJudge`
  (Lee et al. 2024): read the answering model's log-probabilities, free;
* :mod:`.verbalized` — :class:`VerbalizedConfidenceJudge` (Xiong et al. 2024): ask the model;
* :mod:`.self_verification` — :class:`SelfVerificationJudge` (AutoMix, Aggarwal et al. 2024);
* :mod:`.consistency` — :class:`ConsistencyJudge` (Yue et al. 2024): repeated calls at a temperature;
* :mod:`.code_execution` — :class:`CodeExecutionJudge` (EcoAssistant): tests in a limited child process;
* :mod:`.answer_scorer` — :class:`AnswerScorerJudge` (FrugalGPT): a small trained scorer;
* :mod:`.agreement` — :class:`AgreementJudge` (Yue et al. 2024, vote variant): a weighted vote of the answers
  other models already gave in the cascade, free.

:mod:`.llm_client` (:class:`LLMClient`) calls a LocalLLM, any LangChain chat model (duck-typed) or a callable
and records each call; :mod:`.calibration` sets thresholds to a target escalation rate or a budget.

Example:
    >>> from rag_routing.routers.judges import ConsistencyJudge, Judge, TokenMarginJudge
    >>> issubclass(TokenMarginJudge, Judge) and issubclass(ConsistencyJudge, Judge)
    True
"""

from rag_routing.routers.judges.agreement import AgreementJudge
from rag_routing.routers.judges.answer_scorer import AnswerScorerJudge
from rag_routing.routers.judges.base import Judge, JudgeInput
from rag_routing.routers.judges.calibration import escalation_rate, threshold_for_budget, threshold_for_escalation
from rag_routing.routers.judges.code_execution import CodeExecutionJudge
from rag_routing.routers.judges.consistency import ConsistencyJudge
from rag_routing.routers.judges.llm_client import Completion, LLMClient, as_completion
from rag_routing.routers.judges.sandbox import ExecutionResult, run_tests
from rag_routing.routers.judges.self_verification import SelfVerificationJudge
from rag_routing.routers.judges.token_probability import SequenceProbabilityJudge, TokenMarginJudge
from rag_routing.routers.judges.verbalized import VerbalizedConfidenceJudge

__all__ = [
    "Judge",
    "JudgeInput",
    "TokenMarginJudge",
    "SequenceProbabilityJudge",
    "VerbalizedConfidenceJudge",
    "SelfVerificationJudge",
    "ConsistencyJudge",
    "CodeExecutionJudge",
    "AnswerScorerJudge",
    "AgreementJudge",
    "LLMClient",
    "Completion",
    "as_completion",
    "ExecutionResult",
    "run_tests",
    "threshold_for_escalation",
    "threshold_for_budget",
    "escalation_rate",
]
