"""Neighbouring evidence: the answer to a question often sits next to the memory that matches
it (the reply to it, the next line of the exchange) and shares no word with the question. A
search lifts the neighbours of its best hits (same ``context_id``, close in time) toward them,
never above them, except the reply to a hit that asks a question."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

QUERY = "Which hotel did we pick for the Lisbon trip?"
HIT = "Still have to pick the hotel for the Lisbon trip."
QUESTION_HIT = "Which hotel should we pick for the Lisbon trip?"
ANSWER = "Reserved the little guesthouse in Alfama, three nights from May 3."
# other contexts, each closer to the question than the answer is
DISTRACTORS = [
    "The hotel in Porto had a lovely breakfast",
    "We picked the Madrid hotel near the station",
    "Lisbon trams are famous and always crowded",
    "My sister recommends boutique hotels for city trips",
    "Trip budget for Lisbon and Porto: 1200 euros",
    "Packing list for the spring trip: sandals and a raincoat",
]
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _store(api, user_id, content, context_id, at, content_type="conversation"):
    return api.ingest(user_id=user_id, content=content, content_type=content_type, context_id=context_id,
                      importance=0.5, created_at=at.isoformat()).body["memory_id"]


def _long(text):
    """``text`` and a travel diary after it: more than 60 distinct words (length factor < 1)."""
    return text + " " + " ".join(f"Day {n}: {word}." for n, word in enumerate(
        "tiles trams castles viewpoints bakeries pastries fado museums gardens bridges ferries beaches markets "
        "bookshops churches monasteries palaces towers cafes river hills alleys stairs squares fountains statues "
        "libraries theatres galleries parks harbours lighthouses cliffs caves forests vineyards cellars mills "
        "farms villages towns cities islands lagoons dunes valleys lakes".split()))


def _exchange(api, user_id, hit, *after):
    """``hit`` and what follows it in one context; distractors in others, hours apart."""
    ids = {"hit": _store(api, user_id, hit, "chat-7", START)}
    for n, (name, text) in enumerate(after, 1):
        ids[name] = _store(api, user_id, text, "chat-7", START + timedelta(seconds=30 * n))
    for i, text in enumerate(DISTRACTORS):
        ids[text] = _store(api, user_id, text, f"chat-{i}", START + timedelta(hours=3 + i))
    return ids


@pytest.fixture()
def chat(api, user_id):
    return _exchange(api, user_id, HIT, ("answer", ANSWER))


def _results(api, user_id, top_k=4, explain=False):
    return api.search(query=QUERY, user_id=user_id, top_k=top_k, explain=explain).body["results"]


def _ids(api, user_id, top_k=4):
    return [r["id"] for r in _results(api, user_id, top_k)]


def test_the_answer_next_to_the_best_hit_is_lifted_into_the_top(api, user_id, chat, settings_env):
    found = _ids(api, user_id)
    assert found[0] == chat["hit"] and chat["answer"] in found
    settings_env(MEMORY_NEIGHBOUR_SEEDS="0")
    found = _ids(api, user_id)
    assert found[0] == chat["hit"] and chat["answer"] not in found


def test_the_lift_is_the_documented_share_of_the_hits_match(api, user_id, chat, settings_env):
    """relevance + w_sim * weight * the hit's match (1 here: the best by meaning and by words)."""
    def answer_relevance() -> float:
        return next(r["relevance"] for r in _results(api, user_id, 10) if r["id"] == chat["answer"])

    lifted = answer_relevance()
    settings_env(MEMORY_NEIGHBOUR_SEEDS="0")
    assert lifted == pytest.approx(answer_relevance() + 0.6 * 0.3 * 1.0, abs=1e-4)


def test_a_neighbour_never_outranks_its_hit(api, user_id, chat, settings_env):
    settings_env(MEMORY_NEIGHBOUR_WEIGHT="1")
    results = _results(api, user_id)
    assert [r["id"] for r in results[:2]] == [chat["hit"], chat["answer"]]
    assert results[1]["relevance"] <= results[0]["relevance"]


def test_only_the_same_context_close_in_time_counts(api, user_id, settings_env):
    # the same exchange, but the answer in another context / two hours later: not lifted
    hit = _store(api, user_id, HIT, "chat-7", START)
    other_context = _store(api, user_id, ANSWER, "chat-8", START + timedelta(seconds=30))
    later = _store(api, user_id, ANSWER + " (confirmed)", "chat-7", START + timedelta(hours=2))
    for i, text in enumerate(DISTRACTORS):
        _store(api, user_id, text, f"chat-{i}", START + timedelta(hours=3 + i))
    found = _ids(api, user_id)
    assert found[0] == hit
    assert other_context not in found and later not in found


def test_a_neighbour_outside_the_filters_stays_out(api, user_id, chat):
    before_the_answer = (START + timedelta(seconds=10)).isoformat()
    r = api.search(query=QUERY, user_id=user_id, top_k=3, filters={"created_before": before_the_answer})
    assert [x["id"] for x in r.body["results"]] == [chat["hit"]]


def test_explain_shows_the_lift_as_its_own_part(api, user_id, chat):
    results = api.search(query=QUERY, user_id=user_id, top_k=10, explain=True).body["results"]
    for r in results:
        parts = r["explain"]
        assert r["relevance"] == pytest.approx(0.6 * parts["match"] + 0.3 * parts["importance"]
                                               + 0.1 * parts["recency"] + parts["neighbour"], abs=1e-5)
        expected = 0.6 * 0.3 * 1.0 if r["id"] == chat["answer"] else 0.0
        assert parts["neighbour"] == pytest.approx(expected, abs=1e-5)


def test_the_reply_to_a_question_may_pass_it(api, user_id, settings_env):
    """A question is not an answer: the memory right after a hit that asks one gets its own,
    uncapped lift (reply weight 1 here: large enough to pass a question that matches the query
    near-verbatim)."""
    settings_env(MEMORY_NEIGHBOUR_REPLY_WEIGHT="1")
    ids = _exchange(api, user_id, QUESTION_HIT, ("answer", ANSWER))
    assert _ids(api, user_id)[:2] == [ids["answer"], ids["hit"]]
    settings_env(MEMORY_NEIGHBOUR_REPLY_WEIGHT="0", MEMORY_NEIGHBOUR_WEIGHT="1")  # off: capped like any neighbour
    assert _ids(api, user_id)[:2] == [ids["hit"], ids["answer"]]


def test_the_replys_lift_is_the_documented_share_of_the_questions_match(api, user_id, settings_env):
    """relevance + w_sim * reply weight * the question's match (1: the best by meaning and words)."""
    ids = _exchange(api, user_id, QUESTION_HIT, ("answer", ANSWER))

    def answer() -> dict:
        results = api.search(query=QUERY, user_id=user_id, top_k=10, explain=True).body["results"]
        return next(r for r in results if r["id"] == ids["answer"])

    lifted = answer()
    settings_env(MEMORY_NEIGHBOUR_SEEDS="0")
    alone = answer()
    assert lifted["relevance"] == pytest.approx(alone["relevance"] + 0.6 * 0.5 * 1.0, abs=1e-4)
    assert lifted["explain"]["neighbour"] == pytest.approx(0.6 * 0.5, abs=1e-5)


def test_only_the_next_memory_is_the_reply(api, user_id, settings_env):
    settings_env(MEMORY_NEIGHBOUR_WEIGHT="1", MEMORY_NEIGHBOUR_REPLY_WEIGHT="1")
    ids = _exchange(api, user_id, QUESTION_HIT, ("filler", "Good question, let me look."), ("answer", ANSWER))
    found = _ids(api, user_id, top_k=10)
    assert found.index(ids["hit"]) < found.index(ids["answer"])


def test_a_long_reply_does_not_pass_the_question(api, user_id, settings_env):
    """A long text after a question (length factor < 1) is not the short answer to it."""
    settings_env(MEMORY_NEIGHBOUR_REPLY_WEIGHT="1")
    essay = _long(ANSWER)
    ids = _exchange(api, user_id, QUESTION_HIT, ("answer", essay))
    found = _ids(api, user_id, top_k=10)
    assert found[0] == ids["hit"] and ids["answer"] in found


def test_a_long_neighbour_is_not_lifted(api, user_id):
    """A long text next to a hit (an essay after a line) is not the evidence beside it."""
    long_answer = _long(ANSWER)
    ids = _exchange(api, user_id, HIT, ("answer", long_answer))
    parts = {r["id"]: r["explain"] for r in api.search(query=QUERY, user_id=user_id, top_k=10,
                                                        explain=True).body["results"]}
    assert parts[ids["answer"]]["length_factor"] < 1
    assert parts[ids["answer"]]["neighbour"] == 0.0


def test_without_a_context_the_lines_stored_around_a_hit_are_its_neighbours(api, user_id):
    """Lines of conversation stored one after another without a context_id (an agent saving a
    conversation line by line) count as one conversation, within the window."""
    hit = _store(api, user_id, HIT, None, START)
    answer = _store(api, user_id, ANSWER, None, START + timedelta(seconds=30))
    later = _store(api, user_id, ANSWER + " (confirmed)", None, START + timedelta(hours=2))
    in_a_context = _store(api, user_id, "Reserved a table at the Alfama guesthouse.", "chat-1",
                          START + timedelta(seconds=20))
    for i, text in enumerate(DISTRACTORS):
        _store(api, user_id, text, f"chat-{i + 2}", START + timedelta(hours=3 + i))
    parts = {r["id"]: r["explain"]["neighbour"] for r in _results(api, user_id, 10, explain=True)}
    assert parts[answer] > 0
    assert parts.get(later, 0.0) == 0.0 and parts.get(in_a_context, 0.0) == 0.0
    assert hit in parts


def test_without_a_context_memories_stored_at_the_same_instant_are_not_neighbours(api, user_id):
    """A batch stored at one instant has no order to read an exchange from."""
    hit = _store(api, user_id, HIT, None, START)
    answer = _store(api, user_id, ANSWER, None, START)
    for i, text in enumerate(DISTRACTORS):
        _store(api, user_id, text, f"chat-{i}", START + timedelta(hours=3 + i))
    parts = {r["id"]: r["explain"]["neighbour"] for r in _results(api, user_id, 10, explain=True)}
    assert hit in parts and parts.get(answer, 0.0) == 0.0


def test_without_a_context_facts_are_not_neighbours(api, user_id):
    """Facts an agent saves in a burst are unrelated: only lines of conversation are read as an exchange."""
    hit = _store(api, user_id, HIT, None, START, content_type="fact")
    answer = _store(api, user_id, ANSWER, None, START + timedelta(seconds=30), content_type="fact")
    for i, text in enumerate(DISTRACTORS):
        _store(api, user_id, text, f"chat-{i}", START + timedelta(hours=3 + i))
    parts = {r["id"]: r["explain"]["neighbour"] for r in _results(api, user_id, 10, explain=True)}
    assert hit in parts and parts.get(answer, 0.0) == 0.0
