"""Deterministic synthetic memories and queries for the load benchmarks.

Texts read like what an assistant remembers about a person: preferences, plans, facts, bits
of conversation, work notes; 6 to ~70 words, varied vocabulary, numbers, names and dates.
The same ``seed`` always gives the same texts, so a loaded database can be reused.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

PEOPLE = ["Anna", "Ben", "Carla", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ivan", "Julia", "Kenji",
          "Lena", "Marco", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sami", "Tomas", "Uma", "Viktor"]
RELATIONS = ["sister", "brother", "mother", "father", "manager", "colleague", "neighbour", "friend",
             "cousin", "partner", "landlord", "dentist", "coach", "teacher"]
PLACES = ["Lisbon", "Kyoto", "Berlin", "the lake house", "Cape Town", "Oslo", "the office", "Montreal",
          "the gym", "Barcelona", "Seoul", "the farmers market", "Nairobi", "Vienna", "the library"]
FOODS = ["ramen", "sourdough", "tacos", "green curry", "oat milk lattes", "dark chocolate", "sushi",
         "lentil soup", "espresso", "pho", "falafel", "blueberry pancakes", "kimchi", "paella"]
HOBBIES = ["bouldering", "watercolour painting", "trail running", "chess", "baking bread", "birdwatching",
           "playing the cello", "woodworking", "salsa dancing", "photography", "gardening", "sailing"]
PROJECTS = ["Atlas", "Beacon", "Cobalt", "Delta migration", "the billing rewrite", "Falcon", "the Q3 roadmap",
            "the search revamp", "Helios", "the onboarding flow", "Juniper", "the data pipeline"]
TECH = ["PostgreSQL", "Kubernetes", "Rust", "TypeScript", "Terraform", "Redis", "Python", "React",
        "Kafka", "GraphQL", "Lambda", "pgvector"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
FEELINGS = ["excited", "nervous", "tired", "relieved", "frustrated", "happy", "worried", "curious"]
ADJ = ["quiet", "crowded", "cheap", "expensive", "cosy", "noisy", "sunny", "rainy", "slow", "quick"]

TEMPLATES: list[tuple[str, str]] = [
    ("preference", "I really like {food}, especially from the {adj} place near {place}."),
    ("preference", "My favourite way to spend a {day} is {hobby} with {person}."),
    ("preference", "I prefer {adj} hotels when travelling to {place}; the last one cost {num} euros a night."),
    ("preference", "I can't stand {food} anymore after that trip to {place} in {month}."),
    ("preference", "For work I'd rather use {tech} than {tech2}, it saves me about {num} minutes a day."),
    ("fact", "My {relation} {person} lives in {place} and works as a {job}."),
    ("fact", "{person} is allergic to {food} and carries medication at all times."),
    ("fact", "The wifi password at {place} is written on the fridge, ask {person} if it changed."),
    ("fact", "My passport expires in {month} {year}; renewal takes about {num} days."),
    ("fact", "I have been {hobby} for {num} years and joined a club in {place}."),
    ("fact", "Project {project} uses {tech} for storage and {tech2} for the API layer."),
    ("event", "Dentist appointment on {day} {date} at {hour}:30, the clinic is near {place}."),
    ("event", "Flight to {place} on {date}, seat {num}A, remember to check in {hour} hours before."),
    ("event", "{person}'s birthday party is on {day}; I promised to bring {food}."),
    ("event", "The {project} deadline moved to {date}; demo for the team on {day} at {hour}pm."),
    ("event", "Signed up for a {hobby} workshop in {place} running every {day} in {month}."),
    ("conversation", "Talked with {person} about moving to {place}; they felt {feeling} about the idea."),
    ("conversation", "{person} told me the {tech} upgrade broke {project} again, rollback took {num} minutes."),
    ("conversation", "We discussed whether {food} or {food2} is better for the picnic on {day}."),
    ("conversation", "My {relation} asked if I could help with {hobby} lessons next {month}."),
    ("conversation", "Long chat with {person} about burnout; they suggested {hobby} and fewer meetings."),
    ("conversation", "Caught up with my {relation} on the phone, they are {feeling} about the new job in {place}."),
    ("fact", "Remind me: the {project} budget is {num} thousand and {person} signs off on changes."),
    ("event", "Car service booked for {date}, the garage on the way to {place} charges {num} per hour."),
    ("preference", "Never schedule meetings before {hour} am on {day}s, I do {hobby} then."),
]
JOBS = ["nurse", "architect", "data engineer", "chef", "teacher", "pilot", "lawyer", "designer", "carpenter"]
TAILS = [
    "", "", "",
    " It was a {adj} day overall.",
    " {person} thinks this matters more than I do.",
    " Note to self: follow up in {month}.",
    " This came up again while we were in {place} with {person}, and I want to remember the details"
    " because last time I forgot and had to ask twice.",
    " Also worth remembering that {person} recommended {food} and a {adj} spot for {hobby}.",
]


def _fill(rng: random.Random, template: str) -> str:
    start = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 900))
    values = {
        "food": rng.choice(FOODS), "food2": rng.choice(FOODS), "place": rng.choice(PLACES),
        "adj": rng.choice(ADJ), "day": rng.choice(DAYS), "hobby": rng.choice(HOBBIES),
        "person": rng.choice(PEOPLE), "relation": rng.choice(RELATIONS), "project": rng.choice(PROJECTS),
        "tech": rng.choice(TECH), "tech2": rng.choice(TECH), "month": rng.choice(MONTHS),
        "year": rng.randint(2025, 2032), "num": rng.randint(2, 480), "hour": rng.randint(7, 11),
        "date": start.strftime("%B %d"), "feeling": rng.choice(FEELINGS), "job": rng.choice(JOBS),
    }
    return template.format(**values)


def memories(user_id: str, count: int, seed: int, source_type: str = "bench") -> Iterator[dict[str, Any]]:
    """``count`` distinct ingest items for ``user_id`` (deterministic for a given seed)."""
    rng = random.Random(f"{seed}:{user_id}")
    seen: set[str] = set()
    base = datetime(2025, 1, 1, tzinfo=UTC)
    while len(seen) < count:
        ctype, template = rng.choice(TEMPLATES)
        text = _fill(rng, template) + _fill(rng, rng.choice(TAILS))
        if text in seen:
            continue
        seen.add(text)
        yield {
            "user_id": user_id, "content": text, "content_type": ctype, "source_type": source_type,
            "created_at": (base - timedelta(minutes=rng.randint(0, 600 * 24 * 60))).isoformat(),
        }


def memory_batches(user_id: str, count: int, seed: int, size: int = 100) -> Iterator[list[dict[str, Any]]]:
    """:func:`memories` in lists of at most ``size`` (one ``/ingest/batch`` call each)."""
    batch: list[dict[str, Any]] = []
    for item in memories(user_id, count, seed):
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


QUERIES = [
    "what food does {person} like", "when is my dentist appointment", "who is allergic to {food}",
    "where does my {relation} live", "what is the deadline for {project}", "which hotels do I prefer in {place}",
    "what did {person} say about {tech}", "what hobbies am I into", "when is the flight to {place}",
    "what should I bring to {person}'s birthday", "which database does {project} use",
    "how do I feel about moving to {place}", "what did we decide about the picnic",
    "what is the budget of {project}", "when does my passport expire", "things I do on {day} mornings",
]


def queries(count: int, seed: int) -> list[str]:
    rng = random.Random(f"q:{seed}")
    return [_fill(rng, rng.choice(QUERIES)) for _ in range(count)]
