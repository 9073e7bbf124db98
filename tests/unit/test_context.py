"""Token-budgeted context assembly (pure: no database)."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from coda_memory.usecases.context import assemble, chars4, words

memories = st.lists(
    st.fixed_dictionaries({
        "id": st.uuids().map(str),
        "content": st.text(min_size=1, max_size=400),
        "content_type": st.sampled_from(["fact", "event"]),
        "created_at": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1)),
    }),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(mems=memories, budget=st.integers(min_value=1, max_value=400), estimator=st.sampled_from([chars4, words]))
def test_context_never_exceeds_budget_and_keeps_order(mems, budget, estimator):
    out = assemble(mems, budget, estimator)
    assert out.token_count <= budget
    assert out.token_count == (estimator(out.context) if out.context else 0)
    order = [m["id"] for m in mems]
    positions = [order.index(i) for i in out.memory_ids]
    assert positions == sorted(positions)
    assert len(set(out.memory_ids)) == len(out.memory_ids)
    if len(out.memory_ids) < len(mems):
        assert out.truncated or not out.context
    if not out.truncated:
        assert len(out.memory_ids) == len(mems)
