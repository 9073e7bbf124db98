"""The Redis event: its shape, said once, and how it becomes an ingest item.

An agent publishes events in the seed format ``{event_type, content, user_id, metadata}``, plus
any optional ingest field. :class:`SeedEvent` is the one definition of that shape: the subscriber
(``functions/subscriber``) checks each event against it (:func:`event_problem`) so it can
dead-letter a malformed one at once without invoking; the ingest function maps an event to an
ingest item (:func:`event_to_item`) and validates that as any other (``models.IngestItem``: what a
memory may hold is said there, not here).

This module imports nothing of the service but pydantic: the subscriber's container ships it
alone (``functions/subscriber/Dockerfile``; a layer contract in ``pyproject.toml`` keeps it so).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SeedEvent(BaseModel):
    """An event as the agent publishes it: three non-empty strings and an optional metadata
    object; other members are optional ingest fields (validated by the ingest function)."""

    model_config = ConfigDict(extra="allow", strict=True)

    event_type: str = Field(min_length=1)
    content: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    metadata: dict[str, Any] | None = None


_REQUIRED = tuple(name for name, f in SeedEvent.model_fields.items() if f.is_required())


def event_problem(event: dict[str, Any]) -> str | None:
    """Why ``event`` (a decoded JSON object) is not a :class:`SeedEvent`, or None when it is:
    ``missing field(s): ...`` (absent, null or empty) or ``wrong type for field(s): ...``."""
    try:
        SeedEvent.model_validate(event)
    except ValidationError as exc:
        missing = [name for name in _REQUIRED if event.get(name) in (None, "")]
        if missing:
            return "missing field(s): " + ", ".join(missing)
        wrong = dict.fromkeys(str(err["loc"][0]) for err in exc.errors() if err["loc"])
        return "wrong type for field(s): " + ", ".join(wrong)
    return None


def event_to_item(event: Any, *, item_fields: Collection[str], content_types: Sequence[str]) -> Any:
    """Map an event to an ingest item: the members that are fields of an ingest item
    (``item_fields``) as they are; ``event_type`` kept in ``metadata`` and, when no
    ``content_type`` is given, the content type if it is one of ``content_types`` (else
    ``conversation``); ``source_type`` ``event`` unless given. Anything that is not a JSON object
    is returned unchanged, so validation rejects it with a clear reason."""
    if not isinstance(event, dict):
        return event
    item: dict[str, Any] = {k: v for k, v in event.items() if k in item_fields and k != "metadata"}
    event_type = event.get("event_type")
    metadata = event.get("metadata", {})
    if isinstance(metadata, dict) and isinstance(event_type, str):
        metadata = {**metadata, "event_type": event_type[:64]}
    item["metadata"] = metadata
    if "content_type" not in item:
        item["content_type"] = event_type if event_type in content_types else (
            "conversation" if "conversation" in content_types else content_types[0]
        )
    item.setdefault("source_type", "event")
    return item
