"""The long-memory factor: a long text (an assistant's essay, a pasted page) is near many
questions by topic and shares many of their words, so it used to crowd out the short statement
that holds the fact. A memory of more than ``MEMORY_LONG_MEMORY_LEXEMES`` distinct words has
its match multiplied by ``(lexemes / its count) ** power``, never below the floor; a shorter
memory is untouched."""

from __future__ import annotations

import pytest

QUERY = "Which camera did I buy for the Iceland trip?"
FACT = "I bought a Fujifilm X-T5 camera for my Iceland trip in June."
# one long reply on the same topic: more of the question's words, closer by meaning on its own
ESSAY = (
    "Which camera to buy for an Iceland trip? The best camera for Iceland is the camera you will carry on "
    "every trip day: buy a weather-sealed camera, because Iceland trip weather turns in minutes. A camera "
    "kit for an Iceland trip, checked before you buy: "
    + ", ".join(
        "mirrorless body, wide zoom, telephoto lens, spare batteries, charger, power bank, car adapter, tripod, "
        "ball head, remote release, polarising filter, neutral density filters, lens hood, rain cover, dry bag, "
        "microfibre cloths, blower, memory cards, card reader, laptop, backup drive, headlamp, gloves, thermal "
        "layers, crampons, waterproof boots, gaiters, thermos, snacks, map, compass, satellite messenger, first "
        "aid kit, sunglasses, sunscreen, lip balm, earplugs, eye mask, swimsuit, towel, duct tape, zip ties, "
        "multitool, notebook, pencil, passport, insurance papers, driving licence, credit card, cash, phone, "
        "offline maps, weather app, aurora forecast, road conditions, tide tables, ferry timetable, fuel card, "
        "spare tyre, shovel, blanket, hand warmers, beanie, scarf, neck gaiter, down jacket, shell, fleece, "
        "hiking poles, daypack, hydration bladder, water filter, stove, fuel canister, lighter, matches".split(", "))
    + ". Waterfalls, glaciers, black sand beaches, geysers, lagoons, puffins, horses and lava fields all reward "
    "an early start and a late dinner."
)
SHORT_OTHERS = [
    "Packed wool socks and a rain jacket for Reykjavik",
    "The trip budget for Iceland is 3000 dollars",
    "My old camera broke on the beach last year",
]


def _store(api, user_id, content):
    return api.ingest(user_id=user_id, content=content, content_type="conversation", importance=0.5).body[
        "memory_id"]


@pytest.fixture()
def memories(api, user_id):
    return {"fact": _store(api, user_id, FACT), "essay": _store(api, user_id, ESSAY),
            **{text: _store(api, user_id, text) for text in SHORT_OTHERS}}


def _results(api, user_id):
    return api.search(query=QUERY, user_id=user_id, top_k=5, explain=True).body["results"]


def test_the_short_statement_outranks_a_long_text_on_its_topic(api, user_id, memories, settings_env):
    assert _results(api, user_id)[0]["id"] == memories["fact"]
    settings_env(MEMORY_LONG_MEMORY_LEXEMES="0")  # off: the essay won before the factor
    assert _results(api, user_id)[0]["id"] == memories["essay"]


def test_the_factor_is_the_documented_one(api, user_id, memories, settings_env, admin_conn):
    """(lexemes / distinct words) ** power, at least the floor; match carries it, explain shows it."""
    words = admin_conn.execute("SELECT length(search_vector) FROM memories WHERE id = %s",
                             (memories["essay"],)).fetchone()[0]
    assert words > 60
    for env, expected in (({}, 60 / words),
                          ({"MEMORY_LONG_MEMORY_POWER": "2"}, max(0.25, (60 / words) ** 2)),
                          ({"MEMORY_LONG_MEMORY_FLOOR": "0.9"}, 0.9),
                          ({"MEMORY_LONG_MEMORY_LEXEMES": "0"}, 1.0)):
        settings_env(**env)
        essay = next(r for r in _results(api, user_id) if r["id"] == memories["essay"])["explain"]
        assert essay["length_factor"] == pytest.approx(expected, abs=1e-5)
        assert essay["relevance"] == pytest.approx(
            0.6 * essay["match"] + 0.3 * essay["importance"] + 0.1 * essay["recency"] + essay["neighbour"], abs=1e-5)
        settings_env(MEMORY_LONG_MEMORY_POWER="1", MEMORY_LONG_MEMORY_FLOOR="0.25", MEMORY_LONG_MEMORY_LEXEMES="60")


def test_short_memories_are_untouched(api, user_id, memories, settings_env):
    """Every memory of at most the threshold keeps factor 1 and the same scores as with it off
    (neighbouring evidence off: these lines, stored one after another, are neighbours)."""
    settings_env(MEMORY_NEIGHBOUR_SEEDS="0")
    on = {r["id"]: r["explain"] for r in _results(api, user_id) if r["id"] != memories["essay"]}
    assert on and all(parts["length_factor"] == 1.0 for parts in on.values())
    settings_env(MEMORY_NEIGHBOUR_SEEDS="0", MEMORY_LONG_MEMORY_LEXEMES="0")
    off = {r["id"]: r["explain"] for r in _results(api, user_id) if r["id"] != memories["essay"]}
    for memory_id, parts in on.items():
        # match is divided by the best of each list over the candidates: the essay's own
        # cosine/BM25 are unchanged (the factor applies after the fusion), so nothing moves
        assert parts == pytest.approx(off[memory_id], abs=1e-6)


@pytest.mark.parametrize("name,value", [("MEMORY_LONG_MEMORY_LEXEMES", "-1"), ("MEMORY_LONG_MEMORY_POWER", "0"),
                                        ("MEMORY_LONG_MEMORY_FLOOR", "1.5"), ("MEMORY_NEIGHBOUR_REPLY_WEIGHT", "-0.1"),
                                        ("MEMORY_NEIGHBOUR_REPLY_WEIGHT", "2")])
def test_bad_settings_are_refused_at_start(name, value, monkeypatch):
    from pydantic import ValidationError

    from coda_memory.config import Settings

    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("MEMORY_").lower()):
        Settings()
