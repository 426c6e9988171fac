"""Labelled example queries that train the demo's query-complexity classifier (written for this package).

Adaptive-RAG (Jeong et al. 2024) trains its classifier on silver labels from outcomes; ``benchmarks/
rag_stages.py`` does exactly that on MuSiQue. The offline default pipeline has no outcomes to learn from at
start-up, so it learns from these hand-labelled examples instead: ``none`` (chit-chat, no retrieval needed),
``single`` (one fact) and ``multi`` (a chain of facts). None of them is a demo question.
"""

from __future__ import annotations

COMPLEXITY_EXAMPLES: tuple[tuple[str, str], ...] = (
    # none: greetings and chit-chat
    ("Hi!", "none"),
    ("Hello there, how are you?", "none"),
    ("Good morning! Nice to meet you.", "none"),
    ("Hey, what's up?", "none"),
    ("Thanks a lot, that was helpful!", "none"),
    ("Thank you, goodbye!", "none"),
    ("Can you tell me a joke?", "none"),
    ("Who are you?", "none"),
    ("Good evening, I hope you are well.", "none"),
    ("Nice talking to you, bye.", "none"),
    ("How is your day going?", "none"),
    ("Hello, I have a few questions for you.", "none"),
    ("Hi, how are things?", "none"),
    ("Great, thanks!", "none"),
    # single: one fact from one passage
    ("What is the currency of Tesmark?", "single"),
    ("When did the first railway of Tesmark open?", "single"),
    ("How high is Mount Kesh?", "single"),
    ("Who founded the Royal Academy of Brennholm?", "single"),
    ("When was the Ostrelle lighthouse built?", "single"),
    ("What is the official language of Tesmark?", "single"),
    ("Who compiled the first Tesmic dictionary?", "single"),
    ("Where is the Lantern Festival held?", "single"),
    ("Who wrote the novel Pride and Prejudice?", "single"),
    ("Who painted the Mona Lisa?", "single"),
    ("Who built the Eiffel Tower?", "single"),
    ("Who discovered penicillin?", "single"),
    ("When did the Berlin Wall fall?", "single"),
    ("Which river flows through Paris?", "single"),
    ("Where was Albert Einstein born?", "single"),
    ("What is the population of Brennholm?", "single"),
    ("Who composed the Four Seasons?", "single"),
    ("What year did the Titanic sink?", "single"),
    ("When did Queen Victoria die?", "single"),
    ("Where was the poet Jon Aldery born?", "single"),
    ("What is the capital of Harrow?", "single"),
    ("Who designed the Sydney Opera House?", "single"),
    # multi: a chain of facts (the answer to one part is needed to look up the next)
    ("Who was the wife of the king who founded the Royal Academy of Brennholm?", "multi"),
    ("How long is the river that flows through the capital of Tesmark?", "multi"),
    ("Who first climbed the mountain where the longest river of Tesmark begins?", "multi"),
    ("In which year was the founder of the academy where the bridge engineer studied born?", "multi"),
    ("What is the capital of the country whose queen married Arvid the Second?", "multi"),
    ("Who directed the film in which the actor born in Ohio starred?", "multi"),
    ("What language is spoken in the country where the author of the novel was born?", "multi"),
    ("When was the university attended by the inventor of the telephone founded?", "multi"),
    ("Which team did the father of the famous quarterback play for?", "multi"),
    ("Where was the spouse of the president who signed the treaty born?", "multi"),
    ("In which city was the painter of the Mona Lisa born?", "multi"),
    ("Where did the scientist who discovered penicillin go to school?", "multi"),
    ("When was the composer of the Four Seasons born?", "multi"),
    ("What country is the birthplace of the architect who built the Eiffel Tower in?", "multi"),
    ("Who is the mother of the singer who performed the song?", "multi"),
    ("In which town did the writer of Pride and Prejudice die?", "multi"),
    ("In which city was the woman who founded the company born?", "multi"),
    ("In which country was the man who invented the radio educated?", "multi"),
    ("In which village was the sculptor who carved the statue buried?", "multi"),
    ("In what year was the general who won the battle born?", "multi"),
    ("Which school did the pilot who flew the first airmail route attend?", "multi"),
    ("Where did the scientist who named the element die?", "multi"),
)

#: The demo's questions: a greeting (no retrieval), a single-hop and a 2-hop question, with gold answers.
DEMO_QUESTIONS: tuple[tuple[str, str | None], ...] = (
    ("Hello! How are you today?", None),
    ("Who designed the Velmora Opera House?", "Ilse Brandt"),
    ("In which town was the engineer who designed the Halden Bridge born?", "Ostrelle"),
)

__all__ = ["COMPLEXITY_EXAMPLES", "DEMO_QUESTIONS"]
