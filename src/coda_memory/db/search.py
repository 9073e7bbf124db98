"""The search SQL: candidates by meaning (``memory_nearest`` over the user's compact vectors) and
by words (BM25 from the user's postings), fused, then ranked in the database by the blended relevance score of the seed

    relevance = w_sim * match + w_imp * importance + w_rec * 1 / (1 + age_days * decay)

``match`` in [0, 1] depends on ``search_mode`` / ``fusion``:

* ``vector``: the cosine similarity;
* ``hybrid`` + ``convex`` (default): ``a * cos / max_cos + (1 - a) * bm25 / max_bm25`` over the
  candidate set, ``a`` = ``fusion_vector_weight`` (0.5). Dividing by the best score of each list
  puts both on the same scale without amplifying noise (min-max would stretch two near-equal
  scores to 0 and 1) and keeps how far apart candidates are, so a clearly better match keeps
  its lead over the importance and recency terms;
* ``hybrid`` + ``rrf``: weighted reciprocal-rank fusion ``a/(k + vrank) + (1-a)/(k + trank)``,
  divided by its best possible value. Ranks discard score gaps: every candidate below the top
  few gets nearly the same match, and importance then decides the order (measured: LoCoMo
  recall@10 0.628 vs 0.674 for convex, see docs/retrieval.md).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Settings
from . import relations as relation_sql
from .filters import FILTERS, Filters, filters_param, state_clause
from .memories import Columns, prefixed
from .pool import DictCursor

_BM25_K1 = 1.2
_BM25_B = 0.75


# Lexical candidates: the SECURITY DEFINER function bm25_candidates (db/functions/): BM25 from
# the user's term statistics and impact-ordered postings, at most a fixed number of postings
# per query lexeme. Under row-level security the app role reads only its user's rows; the
# function scopes itself to the transaction's app.current_user_id (no user argument).
_LEXICAL_SQL = f"""
SELECT id, score
FROM bm25_candidates(%(query)s::text, %(n)s::integer, {FILTERS}, %(k1)s::float8, %(b)s::float8)"""


# The ranking runs in the database and returns only the top_k rows: memory_rank
# (db/functions/memory_rank.sql) takes the query, its vector and the lexical candidates, finds
# the n nearest (memory_nearest: the user's own vectors, walked in the user's own graph or
# scanned exactly, filters and expiry applied), scores the union on both measures with the
# formula of the module docstring, and answers those rows and their scores; this statement
# selects the columns asked for (metadata as text, decoded for them alone). Python never sees the
# other candidates (building and scoring ~80 candidate rows in Python was ~1/6 of the handler's
# CPU), and the ranking's plan is cached per connection (planning it per call cost ~1 ms).
_SEARCH_SQL = f"""
SELECT {{output}}, r.similarity, r.relevance, r.match, r.lexical, r.importance AS imp, r.recency,
       r.neighbour, r.length_factor
FROM memory_rank(%(query)s::text, %(q)s::halfvec, %(n)s::integer, {FILTERS}, %(t_ids)s::uuid[],
                 %(t_scores)s::float8[], %(match)s::text, %(w_sim)s::float8, %(w_imp)s::float8, %(w_rec)s::float8,
                 %(decay)s::float8, %(a)s::float8, %(rrf_k)s::integer, %(k1)s::float8, %(b)s::float8,
                 %(top_k)s::integer, %(min_sim)s::float8, %(archived)s::boolean, %(superseded)s::boolean,
                 %(nb_seeds)s::integer, %(nb_span)s::integer, make_interval(secs => %(nb_window)s::float8),
                 %(nb_weight)s::float8, %(nb_reply)s::float8, %(long_lexemes)s::integer, %(long_power)s::float8,
                 %(long_floor)s::float8) r
-- the columns of the row memory_rank read (no lookup, nothing to plan)
CROSS JOIN LATERAL (SELECT (r.memory).*) m
ORDER BY r.relevance DESC, r.similarity DESC, r.id"""


# include_archived / include_superseded: the user's memories in those states are in no search
# structure; those containing a query lexeme are found by an exact scan of those rows and
# scored by their exact BM25 (the user's live statistics, as for every candidate).
_HIDDEN_LEXICAL_SQL = f"""
SELECT s.id, s.score
FROM bm25_scores(%(query)s::text, ARRAY(
         SELECT m.id FROM memories m
         WHERE m.user_id = %(user_id)s AND NOT memory_searchable(m) AND {{state}}
           AND memory_visible(m, {FILTERS}) AND m.search_vector @@ or_tsquery(%(query)s::text)),
     %(k1)s::float8, %(b)s::float8) s
WHERE s.score > 0
ORDER BY s.score DESC, s.id LIMIT %(n)s"""


@dataclass(frozen=True)
class Hidden:
    """Which memories outside the search structures a search also ranks."""

    archived: bool = False
    superseded: bool = False

    def __bool__(self) -> bool:
        return self.archived or self.superseded

    @property
    def state(self) -> str:
        return state_clause(include_archived=self.archived, include_superseded=self.superseded)


#: Only the searchable memories (the default of every search).
LIVE = Hidden()


def lexical_candidates(
    cur: DictCursor, query: str, n: int, filters: Filters, hidden: Hidden = LIVE, user_id: str = "",
) -> dict[uuid.UUID, float]:
    """{id: bm25 score} of the best ``n`` lexical candidates, best first (with ``hidden``, the
    matching memories of ``user_id`` in those states compete too). Runs on a cursor of its own
    on ``cur``'s connection and transaction, so it can overlap the query embedding."""
    params = {"query": query, "n": n, "k1": _BM25_K1, "b": _BM25_B, "filters": filters_param(filters),
              "user_id": user_id}
    with cur.connection.cursor() as lex:
        lex.execute(_LEXICAL_SQL, params)
        found = {row[0]: float(row[1]) for row in lex.fetchall()}
        if hidden:
            lex.execute(_HIDDEN_LEXICAL_SQL.format(state=hidden.state), params)
            found.update((row[0], float(row[1])) for row in lex.fetchall())
            found = dict(sorted(found.items(), key=lambda kv: (-kv[1], str(kv[0])))[:n])
        return found


@dataclass(frozen=True)
class Ranking:
    w_sim: float
    w_imp: float
    w_rec: float
    decay: float
    mode: str
    rrf_k: int
    fusion: str = "convex"
    vector_weight: float = 0.5
    # neighbouring evidence (memory_rank.sql); off unless the settings turn it on
    neighbour_seeds: int = 0
    neighbour_span: int = 0
    neighbour_window_s: float = 0.0
    neighbour_weight: float = 0.0
    neighbour_reply_weight: float = 0.0
    # the long-memory factor (memory_rank.sql); off unless the settings turn it on
    long_memory_lexemes: int = 0
    long_memory_power: float = 1.0
    long_memory_floor: float = 0.0

    @classmethod
    def from_settings(cls, s: Settings) -> Ranking:
        return cls(s.weight_similarity, s.weight_importance, s.weight_recency, s.recency_decay,
                   s.search_mode, s.rrf_k, s.fusion, s.fusion_vector_weight, s.neighbour_seeds,
                   s.neighbour_span, s.neighbour_window_seconds, s.neighbour_weight, s.neighbour_reply_weight,
                   s.long_memory_lexemes,
                   s.long_memory_power, s.long_memory_floor)

    @property
    def match_key(self) -> str:
        return self.fusion if self.mode == "hybrid" else "vector"

    def params(self) -> dict[str, Any]:
        return {"w_sim": self.w_sim, "w_imp": self.w_imp, "w_rec": self.w_rec, "decay": self.decay,
                "a": self.vector_weight, "rrf_k": self.rrf_k, "nb_seeds": self.neighbour_seeds,
                "nb_span": self.neighbour_span, "nb_window": self.neighbour_window_s,
                "nb_weight": self.neighbour_weight, "nb_reply": self.neighbour_reply_weight,
                "long_lexemes": self.long_memory_lexemes,
                "long_power": self.long_memory_power, "long_floor": self.long_memory_floor}


def rank(
    cur: DictCursor,
    user_id: str,
    query: str,
    query_vector: np.ndarray,
    lexical: dict[uuid.UUID, float],
    filters: Filters,
    ranking: Ranking,
    top_k: int,
    n: int,
    min_similarity: float | None = None,
    hidden: Hidden = LIVE,
    *,
    columns: Columns,
) -> list[dict[str, Any]]:
    """``columns`` and the scores of the top ``top_k`` memories of ``user_id`` by relevance, from the ``n`` nearest by
    cosine and the ``lexical`` candidates (RLS scopes ``cur`` already), leaving out those whose
    cosine similarity is below ``min_similarity`` (after normalising over all candidates, so
    the threshold changes no score; 0 or None keeps everything, negative cosines included).
    With ``hidden``, the ``n`` nearest archived and/or superseded memories are candidates too."""
    params = {**ranking.params(), "user_id": user_id, "n": n, "q": query_vector, "top_k": top_k,
              "t_ids": list(lexical), "t_scores": list(lexical.values()), "min_sim": min_similarity,
              "query": query, "k1": _BM25_K1, "b": _BM25_B, "match": ranking.match_key,
              "filters": filters_param(filters), "archived": hidden.archived, "superseded": hidden.superseded}
    cur.execute(_SEARCH_SQL.format(output=_select_list(columns)), params)
    rows = cur.fetchall()
    for row in rows:
        row["metadata"] = json.loads(row["metadata"])
        row["similarity"] = float(row["similarity"])
        row["relevance"] = float(row["relevance"])
        parts = {"cosine": row["similarity"], "lexical": row.pop("lexical"), "match": row.pop("match"),
                 "importance": row.pop("imp"), "recency": row.pop("recency"), "neighbour": row.pop("neighbour"),
                 "length_factor": row.pop("length_factor"), "relevance": row["relevance"]}
        # to 6 decimals, as every score in an answer
        row["explain"] = {k: round(float(v), 6) for k, v in parts.items()}
    return rows


def _select_list(columns: Columns) -> str:
    # metadata as text, decoded by the caller for the returned rows (see _SEARCH_SQL)
    return prefixed(columns).replace("m.metadata", "m.metadata::text AS metadata")


def expanded(cur: DictCursor, user_id: str, ids: list[uuid.UUID], hidden: Hidden = LIVE, *,
             columns: Columns) -> list[dict[str, Any]]:
    """The memories that ``ids`` extend or are derived_from (db/relations.py ``expansion``), as
    rows of the shape :func:`rank` returns (similarity and relevance 0: they were not ranked),
    in expansion order."""
    targets = relation_sql.expansion(cur, user_id, ids, hidden.state)
    if not targets:
        return []
    cur.execute(
        f"SELECT {_select_list(columns)}, 0::float8 AS similarity, 0::float8 AS relevance FROM memories m "
        "WHERE m.user_id = %s AND m.id = ANY(%s)",
        (user_id, targets),
    )
    by_id = {r["id"]: r for r in cur.fetchall()}
    rows = [by_id[t] for t in targets if t in by_id]
    for row in rows:
        row["metadata"] = json.loads(row["metadata"])
    return rows
