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
from ..models import SearchFilters
from . import relations as relation_sql
from .filters import FILTERS, filters_param, state_clause
from .filters import where_clause as _where
from .memories import MEMORY_COLUMNS, prefixed
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


# One statement ranks the candidates and returns only the top_k rows:
# v = the n nearest by cosine (memory_nearest: the user's own vectors, walked in the user's own
# graph or scanned exactly, filters and expiry applied; db/functions/); t = the lexical
# candidates (ids and BM25 scores, in rank order); c = their union, fetched by primary key (a
# plain join on c was planned as a merge join that read every row of the user: 6 ms at 10k
# memories); the relevance formula (module docstring) is {match} plus fixed terms. Python never
# sees the other candidates (building and scoring ~80 candidate rows in Python was ~1/6 of the
# handler's CPU), and metadata comes as text and is decoded for the returned rows only.
_SEARCH_SQL = """
WITH v AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS rank
    FROM (SELECT id, distance FROM memory_nearest(%(q)s::halfvec, %(n)s, {filters}){hidden}) near
),
t AS (SELECT id, bm25, rank
      FROM unnest(%(t_ids)s::uuid[], %(t_scores)s::float8[]) WITH ORDINALITY AS t(id, bm25, rank)),
-- the exact BM25 of the nearest that are not lexical candidates (hybrid only), so both lists
-- are scored on both measures
vb AS (SELECT id, score FROM bm25_scores(%(query)s::text, ARRAY(SELECT id FROM v WHERE id NOT IN (SELECT id FROM t)),
                                         %(k1)s::float8, %(b)s::float8)
       WHERE %(hybrid)s),
c AS (SELECT coalesce(v.id, t.id) AS id, v.rank AS vrank, t.rank AS trank, coalesce(t.bm25, vb.score) AS bm25
      FROM v FULL JOIN t ON v.id = t.id LEFT JOIN vb ON vb.id = v.id),
scored AS (
    SELECT {columns}, m.importance::float8 AS imp, c.vrank, c.trank, c.bm25,
           -- a zero vector has no direction: pgvector answers NaN, counted as no similarity
           coalesce(nullif(1 - (m.embedding <=> %(q)s::halfvec), 'NaN'::float8), 0) AS similarity
    FROM memories m JOIN c ON c.id = m.id
    -- every filter again, in this statement's snapshot: a lexical candidate may have been
    -- deleted, archived or expired since bm25_candidates (which applies the same filters) ran
    WHERE {where} AND m.id = ANY(ARRAY(SELECT id FROM c))
),
normed AS (
    SELECT s.*, greatest(s.similarity, 0) AS cos,
           max(greatest(s.similarity, 0)) OVER () AS top_cos, max(s.bm25) OVER () AS top_bm25,
           1 / (1 + greatest(0, extract(epoch FROM now() - s.created_at)::float8 / 86400) * %(decay)s::float8)
               AS recency
    FROM scored s
)
SELECT {output}, similarity,
       %(w_sim)s::float8 * ({match}) + %(w_imp)s::float8 * imp + %(w_rec)s::float8 * recency AS relevance,
       -- the parts of the score, for `explain`
       ({match}) AS match, coalesce(bm25, 0) AS lexical, imp, recency
FROM normed
{threshold}
ORDER BY relevance DESC, similarity DESC, id
LIMIT %(top_k)s"""

# include_archived / include_superseded: memories outside the search structures, found by an
# exact scan of the user's rows in that state (cosine of each; ranked with the others).
_HIDDEN_NEAREST_SQL = """
    UNION ALL
    (SELECT m.id, (m.embedding <=> %(q)s::halfvec)::float8 FROM memories m
     WHERE m.user_id = %(user_id)s AND NOT memory_searchable(m) AND {state} AND memory_visible(m, {filters})
     ORDER BY 2, 1 LIMIT %(n)s)"""

# ... and those of them that contain a query lexeme, by their exact BM25 (the user's live
# statistics, as for every candidate).
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


# The match term per mode/fusion (fixed fragments over normed's columns; values are parameters).
_MATCH_SQL = {
    "vector": "cos",
    "convex": "%(a)s::float8 * cos / coalesce(nullif(top_cos, 0), 1)"
              " + (1 - %(a)s::float8) * coalesce(bm25, 0) / coalesce(nullif(top_bm25, 0), 1)",
    # divided by the best possible value 1/(k + 1)
    "rrf": "(%(a)s::float8 * coalesce(1.0::float8 / (%(rrf_k)s::int + vrank), 0)"
           " + (1 - %(a)s::float8) * coalesce(1.0::float8 / (%(rrf_k)s::int + trank), 0))"
           " * (%(rrf_k)s::int + 1)",
}

def lexical_candidates(
    cur: DictCursor, query: str, n: int, filters: SearchFilters, hidden: Hidden = LIVE, user_id: str = "",
) -> dict[uuid.UUID, float]:
    """{id: bm25 score} of the best ``n`` lexical candidates, best first (with ``hidden``, the
    matching memories in those states compete too). Runs on a cursor of its own on ``cur``'s
    connection and transaction, so it can overlap the query embedding."""
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

    @classmethod
    def from_settings(cls, s: Settings) -> Ranking:
        return cls(s.weight_similarity, s.weight_importance, s.weight_recency, s.recency_decay,
                   s.search_mode, s.rrf_k, s.fusion, s.fusion_vector_weight)

    @property
    def match_key(self) -> str:
        return self.fusion if self.mode == "hybrid" else "vector"

    def params(self) -> dict[str, Any]:
        return {"w_sim": self.w_sim, "w_imp": self.w_imp, "w_rec": self.w_rec, "decay": self.decay,
                "a": self.vector_weight, "rrf_k": self.rrf_k}


def rank(
    cur: DictCursor,
    user_id: str,
    query: str,
    query_vector: np.ndarray,
    lexical: dict[uuid.UUID, float],
    filters: SearchFilters,
    ranking: Ranking,
    top_k: int,
    n: int,
    min_similarity: float | None = None,
    hidden: Hidden = LIVE,
) -> list[dict[str, Any]]:
    """The top ``top_k`` memories of ``user_id`` by relevance, from the ``n`` nearest by
    cosine and the ``lexical`` candidates (RLS scopes ``cur`` already), leaving out those whose
    cosine similarity is below ``min_similarity`` (after normalising over all candidates, so
    the threshold changes no score; 0 or None keeps everything, negative cosines included).
    With ``hidden``, the ``n`` nearest archived and/or superseded memories are candidates too."""
    where, params = _where(filters, include_archived=hidden.archived, include_superseded=hidden.superseded)
    params.update(ranking.params(), user_id=user_id, n=n, q=query_vector, top_k=top_k,
                  t_ids=list(lexical), t_scores=list(lexical.values()), min_sim=min_similarity,
                  query=query, k1=_BM25_K1, b=_BM25_B, hybrid=ranking.mode == "hybrid")
    sql = _SEARCH_SQL.format(where=where, columns=_COLUMNS, output=MEMORY_COLUMNS, filters=FILTERS,
                             hidden=_HIDDEN_NEAREST_SQL.format(state=hidden.state, filters=FILTERS) if hidden else "",
                             match=_MATCH_SQL[ranking.match_key],
                             threshold="WHERE similarity >= %(min_sim)s::float8" if min_similarity else "")
    cur.execute(sql, params)
    rows = cur.fetchall()
    for row in rows:
        row["metadata"] = json.loads(row["metadata"])
        row["similarity"] = float(row["similarity"])
        row["relevance"] = float(row["relevance"])
        parts = {"cosine": row["similarity"], "lexical": row.pop("lexical"), "match": row.pop("match"),
                 "importance": row.pop("imp"), "recency": row.pop("recency"), "relevance": row["relevance"]}
        # to 6 decimals, as every score in an answer
        row["explain"] = {k: round(float(v), 6) for k, v in parts.items()}
    return rows


_COLUMNS = prefixed(MEMORY_COLUMNS).replace("m.metadata", "m.metadata::text AS metadata")


def expanded(cur: DictCursor, user_id: str, ids: list[uuid.UUID], hidden: Hidden = LIVE) -> list[dict[str, Any]]:
    """The memories that ``ids`` extend or are derived_from (db/relations.py ``expansion``), as
    rows of the same shape as :func:`rank` returns (no similarity or relevance of their own:
    0), in expansion order."""
    targets = relation_sql.expansion(cur, user_id, ids, hidden.state)
    if not targets:
        return []
    cur.execute(
        f"SELECT {_COLUMNS}, 0::float8 AS similarity, 0::float8 AS relevance FROM memories m "
        "WHERE m.user_id = %s AND m.id = ANY(%s)",
        (user_id, targets),
    )
    by_id = {r["id"]: r for r in cur.fetchall()}
    rows = [by_id[t] for t in targets if t in by_id]
    for row in rows:
        row["metadata"] = json.loads(row["metadata"])
    return rows
