"""Events from Redis (seed format ``{event_type, content, user_id, metadata}``) turned into
ingest items. Shared by the ingest function's direct-invoke path. The subscriber only checks
that an event is a JSON object with the required string fields (so it can dead-letter a
malformed one at once) and moves it; validating its content is the ingest function's work."""

from __future__ import annotations

from typing import Any

from .config import get_settings

# Optional ingest fields an event may carry as they are.
_PASSTHROUGH = (
    "content", "user_id", "content_type", "source_type", "source_id", "context_id", "tags",
    "importance", "confidence", "created_at", "expires_at", "supersedes", "relations",
)


def event_to_item(event: Any) -> Any:
    """Map a seed event to an ingest item. Anything that is not a JSON object is returned
    unchanged, so validation rejects it with a clear reason."""
    if not isinstance(event, dict):
        return event
    item: dict[str, Any] = {k: event[k] for k in _PASSTHROUGH if k in event}
    event_type = event.get("event_type")
    metadata = event.get("metadata", {})
    if isinstance(metadata, dict) and isinstance(event_type, str):
        metadata = {**metadata, "event_type": event_type[:64]}
    item["metadata"] = metadata
    if "content_type" not in item:
        types = get_settings().content_types
        item["content_type"] = event_type if event_type in types else (
            "conversation" if "conversation" in types else types[0]
        )
    item.setdefault("source_type", "event")
    return item
