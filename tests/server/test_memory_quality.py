"""Retrieval quality of the embedders, measured: 20 questions, each answered by one of
40 short documents, where every answer has a lexical decoy (a document sharing the
question's key word but not answering it) and the questions paraphrase their answer.

recall@1 is the share of questions whose answer comes first. Measured here:
all-MiniLM-L6-v2 (int8, `minilm`) 20/20; the hash embedder (the default) 2/20 (and
20/20 when the query shares the answer's words: it is lexical). The
tests hold the embedders to these figures (with a margin), and run the whole path:
the documents are ingested through `Memory` into the local Vectorize index and
searched there, exactly as the HTTP API does. `-s` prints the figures.
"""

from __future__ import annotations

from typing import Any

import pytest

from flarebase.server.memory import HashEmbedder, Memory

from .conftest import Server

# (answer, question, decoy)
CASES = [
    (
        "Our office is closed on public holidays; staff may work remotely on those days "
        "only with their manager's approval.",
        "Can I work from home when the company is shut for a national holiday?",
        "The holiday party is held in the office cafeteria every December.",
    ),
    (
        "To reset a forgotten password, open the sign-in page, choose 'Forgot password' and "
        "follow the link sent to your email.",
        "I can't remember my login credentials, how do I get back into my account?",
        "Passwords must contain at least twelve characters and one symbol.",
    ),
    (
        "Refunds are issued to the original payment method within five business days after "
        "the returned item arrives at our warehouse.",
        "How long until I get my money back after sending a product back?",
        "Our warehouse ships orders Monday through Friday from Rotterdam.",
    ),
    (
        "The API allows 100 requests per minute per key; beyond that it answers with status "
        "429 and a Retry-After header.",
        "How many calls can my integration make each minute before being throttled?",
        "Each API key belongs to one project and can be revoked from the dashboard.",
    ),
    (
        "Dogs must be kept on a leash in the park between April and September to protect "
        "nesting birds.",
        "When do I have to keep my pet restrained during walks in the green area?",
        "The park café sells dog treats and bird seed.",
    ),
    (
        "The museum offers free admission to visitors under eighteen years old.",
        "Do children have to pay to enter the gallery?",
        "Visitors must leave large bags at the museum cloakroom.",
    ),
    (
        "Backups of the database run every night at 2 a.m. and are kept for thirty days.",
        "How often is our data copied for disaster recovery, and how long is it retained?",
        "The database has 40 tables and uses UTF-8 encoding.",
    ),
    (
        "Employees receive a yearly allowance of 500 euros for training courses and "
        "conference tickets.",
        "Is there a budget for professional development?",
        "Conference rooms can be booked through the shared calendar.",
    ),
    (
        "The train to the airport leaves every fifteen minutes from platform 4 and takes "
        "about twenty minutes.",
        "How frequently does the rail service to the airport depart?",
        "The airport has three terminals and a hotel.",
    ),
    (
        "Tomatoes should be watered deeply twice a week rather than a little every day.",
        "How should I irrigate my vegetable plants?",
        "Tomatoes are a good source of vitamin C.",
    ),
    (
        "Invoices are due thirty days after the date of issue; late payments incur a 2% fee.",
        "What happens if a customer pays a bill late?",
        "Invoices can be downloaded as PDF files from the billing page.",
    ),
    (
        "Smoking is prohibited anywhere on the hospital grounds, including the parking garage.",
        "Am I allowed to light a cigarette in the car park of the clinic?",
        "The hospital parking garage costs two euros per hour.",
    ),
    (
        "The library lends up to ten books at a time for a period of three weeks.",
        "How many novels can I borrow and for how long?",
        "The library café serves coffee, and books may be read there.",
    ),
    (
        "Meetings longer than one hour must have a written agenda shared a day in advance.",
        "Do long gatherings need a plan sent out beforehand?",
        "Meeting rooms have projectors and whiteboards.",
    ),
    (
        "New laptops are configured by the IT team within two days of a hire's start date.",
        "When will a new employee get their computer set up?",
        "Laptops should not be left in cars overnight.",
    ),
    (
        "The swimming pool requires a cap for all swimmers and closes for cleaning on Mondays.",
        "Which day is the pool shut?",
        "The pool water is kept at 28 degrees.",
    ),
    (
        "Customers can cancel a subscription at any time; access continues until the end of "
        "the paid period.",
        "If I stop my plan, do I lose access immediately?",
        "Subscription prices rise by five percent in January.",
    ),
    (
        "Earthquakes are measured with seismometers, which record the motion of the ground.",
        "What instrument detects tremors of the earth?",
        "The earth orbits the sun once a year.",
    ),
    (
        "Fresh bread stays soft longer when stored in a paper bag at room temperature rather "
        "than in the fridge.",
        "What's the best way to keep a loaf from going stale?",
        "The fridge should be set between three and five degrees.",
    ),
    (
        "Vaccinations for travel to tropical countries should be planned at least six weeks "
        "before departure.",
        "How early should I get my shots before a trip to the tropics?",
        "Departure gates close twenty minutes before the flight.",
    ),
]


def recall_at_1(
    server: Server, embedder: Any, user_id: str, cases: list[tuple[str, str, str]] = CASES
) -> int:
    """Ingest every document (answers and decoys) through Memory, then ask each
    question: how many find their answer first."""
    memory = Memory(
        db=server.env.DB, index=server.env.MEMORY, bucket=server.env.BUCKET, embedder=embedder
    )
    server.run(memory.prepare)
    answer_ids = []
    for answer, _, decoy in cases:
        for text in (answer, decoy):
            row = server.run(lambda t=text: memory.ingest(user_id, t.encode(), kind="text"))
            if text is answer:
                answer_ids.append(row.id)
    hits = 0
    for (_, question, _), expected in zip(cases, answer_ids, strict=True):
        top = server.run(lambda q=question: memory.search(user_id, q, top_k=1))
        hits += top[0].document_id == expected
    return hits


@pytest.fixture
def user_id(server: Server) -> str:
    client = server.client()
    return server.sign_up(client, "quality@example.com")["user"]["id"]  # type: ignore[no-any-return]


def test_hash_embedder_recall(server: Server, user_id: str) -> None:
    hits = recall_at_1(server, HashEmbedder(), user_id)
    print(f"\nhash embedder: recall@1 {hits}/{len(CASES)} on paraphrases (lexical only)")
    # Lexical only: paraphrases defeat it and decoys that share a word win (2/20 here).
    assert hits <= 5


def test_hash_embedder_finds_shared_words(server: Server, user_id: str) -> None:
    """What it is for: a query that shares the answer's words finds it, decoys or not."""
    keyword_cases = [(a, " ".join(a.split()[1:7]), d) for a, _, d in CASES]
    hits = recall_at_1(server, HashEmbedder(), user_id, keyword_cases)
    print(f"\nhash embedder: recall@1 {hits}/{len(CASES)} on shared words")
    assert hits == len(CASES)


def test_local_model_recall(server: Server, user_id: str) -> None:
    from flarebase.server.memory.minilm import MiniLMEmbedder, install_tokenizer

    install_tokenizer()
    hits = recall_at_1(server, MiniLMEmbedder(), user_id)
    print(f"\nall-MiniLM-L6-v2 (int8): recall@1 {hits}/{len(CASES)}")
    assert hits >= 18
