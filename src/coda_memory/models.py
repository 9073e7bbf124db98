"""Request shapes of the API contract, validated with the configured limits.

Validation errors become ``422 validation_error`` responses listing the offending fields
(never echoing the input values, which may be large or sensitive).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonDict, JsonValue, SkipJsonSchema, WithJsonSchema

from .config import DEFAULT_CONTENT_TYPES, Settings, get_settings
from .errors import BadRequest, MemoryServiceError, ValidationFailed
from .events import event_to_item
from .text import sanitize, sanitize_json

ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,255}$"
Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
#: A memory id as every answer writes it. The document gives the pattern beside ``format: uuid``
#: (which schema validators and generators may ignore), so a client generated from it sends ids
#: the API accepts.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID_SCHEMA: JsonDict = {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}
MemoryId = Annotated[uuid.UUID, WithJsonSchema(UUID_SCHEMA)]
_CLOCK_SKEW = timedelta(minutes=5)
M = TypeVar("M", bound=BaseModel)


# --- what the OpenAPI document and the MCP tool schemas say ------------------------------------
# The validators below enforce the configured limits with their own messages; the schemas state
# the same rules as far as JSON Schema can (with the default limits), so a client generated from
# the document sends what the service accepts.


def _limit(name: str) -> int:
    default = Settings.model_fields[name].default
    assert isinstance(default, int)
    return default


#: at least one character that is neither white space nor a control character (``sanitize``
#: removes control characters and trims white space; nothing may be left empty)
VISIBLE_PATTERN = r"[^\s\x00-\x1f\x7f-\x9f]"


def _text_schema(max_chars: int) -> JsonDict:
    return {"minLength": 1, "maxLength": max_chars, "pattern": VISIBLE_PATTERN}


def optional(**schema: JsonValue) -> Callable[[JsonDict], None]:
    """``json_schema_extra`` for a member that may be left out but is never null: no
    ``default: null`` in the schema, plus ``schema``."""

    def update(out: JsonDict) -> None:
        out.pop("default", None)
        out.update(schema)

    return update


#: A page cursor: the keyset position of the previous page's last memory, its created_at in
#: microseconds since 1970 (UTC) and its id. Every text of this form is a position (so a client
#: generated from the document sends valid ones); cursors from before this form are still read.
CURSOR_PATTERN = r"^-?[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
CURSOR_SCHEMA: JsonDict = {"pattern": CURSOR_PATTERN, "maxLength": 200}

_CONTENT_SCHEMA: JsonDict = _text_schema(_limit("max_content_chars"))
_TAGS_SCHEMA: JsonDict = {"maxItems": _limit("max_tags"),
                          "items": {"type": "string", **_text_schema(_limit("max_tag_chars"))}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


def _as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (without an offset it is taken as UTC). An instant that
    leaves the years 1-9999 once converted to UTC (``0001-01-01T00:00:05+04:00``,
    ``9999-12-31T23:59:59-05:00``) is refused: Python's datetime cannot hold it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must lie within the years 0001 to 9999 once converted to UTC") from None


#: Every timestamp the service reads -- request bodies and query strings, events, import lines,
#: cursors: RFC 3339 (an offset, ``Z``, or none for UTC), held as an aware UTC datetime.
UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]
_UTC_DATETIME: TypeAdapter[datetime] = TypeAdapter(UtcDateTime)


def parse_timestamp(value: Any) -> datetime:
    """``value`` (text or datetime) as a :data:`UtcDateTime`; ``ValueError`` when it is not one."""
    return _UTC_DATETIME.validate_python(value)


def _check_tags(tags: list[str]) -> list[str]:
    settings = get_settings()
    if len(tags) > settings.max_tags:
        raise ValueError(f"at most {settings.max_tags} tags")
    cleaned: list[str] = []
    for tag in tags:
        tag = sanitize(tag)
        if not tag:
            raise ValueError("tags must not be empty")
        if len(tag) > settings.max_tag_chars:
            raise ValueError(f"each tag has at most {settings.max_tag_chars} characters")
        cleaned.append(tag)
    return cleaned


def _valid_content(value: str) -> str:
    limit = get_settings().max_content_chars
    if len(value) > limit * 2:  # cheap early bound before normalising huge input
        raise ValueError(f"content has at most {limit} characters")
    value = sanitize(value)
    if not value:
        raise ValueError("content is empty after removing control characters and white space")
    if len(value) > limit:
        raise ValueError(f"content has at most {limit} characters")
    return value


def _score(value: float) -> float:
    # Stored as PostgreSQL real (float4): a value like 1e-239 passes 0 <= x <= 1 but makes the
    # insert fail with "value out of range: underflow" (found by the fuzzer: a 500). Answers
    # show scores to 6 decimals, so they are kept to 6 decimals.
    return round(value, 6)


#: An importance, confidence or threshold in [0, 1].
Score = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False), AfterValidator(_score)]

#: A content type as the document states it: the default set (``MEMORY_CONTENT_TYPES`` may
#: configure others; the validators check the configured set).
ContentTypeName = Annotated[str, Field(json_schema_extra={"enum": list(DEFAULT_CONTENT_TYPES)})]


def _valid_content_type(value: str) -> str:
    allowed = get_settings().content_types
    if value not in allowed:
        raise ValueError(f"content_type must be one of: {', '.join(allowed)}")
    return value


def _valid_metadata(value: dict[str, Any]) -> dict[str, Any]:
    value = sanitize_json(value)
    limit = get_settings().max_metadata_bytes
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode())
    except ValueError as exc:
        raise ValueError("metadata must be JSON without NaN or Infinity") from exc
    if size > limit:
        raise ValueError(f"metadata is at most {limit} bytes as JSON")
    return value


CREATED_AT_RULE = "when the memory was made (imports keep original times): 1970 or later, not in the future"
EXPIRES_AT_RULE = ("when the memory stops showing up: in the future (up to 5 minutes of clock skew: it then expires "
                   "at once), before the year 9999 (in UTC)")
# JSON Schema cannot say "not in the future" or "in the future": the patterns narrow the years
# so that values generated from the document are ones the service takes (created_at from 1970;
# expires_at from 2027 to 9998 -- a year that has begun would let generators pick instants
# already past; the service also takes the rest of the current year).
CREATED_AT_SCHEMA: JsonDict = {"pattern": r"^(?:19[7-9]\d|[2-9]\d{3})-"}
EXPIRES_AT_SCHEMA: JsonDict = {
    "pattern": r"^(?:202[7-9]|20[3-9]\d|2[1-9]\d{2}|[3-8]\d{3}|9[0-8]\d{2}|99[0-8]\d|999[0-8])-"}


def _valid_expires_at(value: datetime | None) -> datetime | None:
    """A future instant (UTC); None = never expires. Up to the clock skew in the past is taken
    (the memory expires at once), as created_at takes the skew the other way: a client whose
    clock runs ahead, or one that asks for "expire now", is not refused."""
    if value is None:
        return None
    if value <= datetime.now(UTC) - _CLOCK_SKEW:
        raise ValueError("expires_at must be in the future (5 minutes of clock skew allowed)")
    if value.year > 9999 - 1:
        raise ValueError("expires_at is too far in the future")
    return value


#: Relations a client may record between two memories of one user (supersession is its own
#: field, ``supersedes``, and shows in relation listings as type ``supersedes``).
RelationType = Literal["extends", "derived_from", "relates_to"]
#: Every type a relation listing shows.
LinkType = Literal["supersedes", "extends", "derived_from", "relates_to"]
#: At most this many ``supersedes`` ids, and relations, per item or request.
MAX_LINKS = 10


class RelationSpec(_Strict):
    """A relation from the memory being written to another memory of the same user."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # hashable: repeats are dropped

    type: RelationType = Field(description="extends | derived_from | relates_to")
    target_id: MemoryId


def _unique(values: list[Any]) -> list[Any]:
    """``values`` without repeats, first occurrence kept (a repeated id asks for nothing more)."""
    return list(dict.fromkeys(values))


class IngestItem(_Strict):
    """One memory to store (``POST /ingest`` body, or an item of ``/ingest/batch``)."""

    content: str = Field(examples=["I prefer green tea in the morning"], json_schema_extra=_CONTENT_SCHEMA)
    content_type: ContentTypeName = Field(examples=["preference"], description="one of the configured content types "
                              "(default: conversation, fact, preference, event)")
    source_type: Identifier = Field(examples=["chat"])
    user_id: Identifier = Field(examples=["alice"])
    context_id: Identifier | None = None
    source_id: Identifier | None = None
    tags: list[str] = Field(default_factory=list, json_schema_extra=_TAGS_SCHEMA)
    metadata: dict[str, Any] = Field(default_factory=dict)
    importance: Score | None = None
    confidence: Score = 1.0
    created_at: UtcDateTime | None = Field(None, description=CREATED_AT_RULE, json_schema_extra=CREATED_AT_SCHEMA)
    expires_at: UtcDateTime | None = Field(None, description=EXPIRES_AT_RULE, json_schema_extra=EXPIRES_AT_SCHEMA)
    supersedes: list[MemoryId] = Field(
        default_factory=list, max_length=MAX_LINKS,
        description="ids of the user's memories this one replaces: they leave search, context and listings "
                    "(readable by id, superseded_by set)")
    relations: list[RelationSpec] = Field(default_factory=list, max_length=MAX_LINKS)
    return_similar: bool = Field(False, description="answer with up to 3 live memories close to this one (similar)")

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        return _valid_content(value)

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, value: str) -> str:
        return _valid_content_type(value)

    @field_validator("supersedes", "relations")
    @classmethod
    def _links(cls, value: list[Any]) -> list[Any]:
        return _unique(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return _check_tags(value)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _valid_metadata(value)

    @field_validator("expires_at")
    @classmethod
    def _expires_at(cls, value: datetime | None) -> datetime | None:
        return _valid_expires_at(value)

    @field_validator("created_at")
    @classmethod
    def _created_at(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value > datetime.now(UTC) + _CLOCK_SKEW:
            raise ValueError("created_at must not be in the future")
        if value.year < 1970:
            raise ValueError("created_at must be after 1970")
        return value


EMBEDDING_DIM = 384


class LinkLine(_Strict):
    """A relation as the export writes it on each line it touches (both ends): the import
    restores it once both memories exist, whichever line comes last."""

    source_id: MemoryId
    type: LinkType
    target_id: MemoryId
    created_at: UtcDateTime | None = None


class ImportLine(IngestItem):
    """One line of ``POST /users/{user_id}/import`` (the export format). ``user_id`` may be
    left out (the path names the user); ``id`` and ``created_at`` are kept when given.
    ``links`` (the export's relations of the memory, supersession included) are restored once
    both ends exist; ``supersedes`` and ``relations`` are checked like on ingest."""

    user_id: Identifier | None = None  # type: ignore[assignment]
    source_type: Identifier = "import"
    id: MemoryId | None = None
    event_id: Identifier | None = None
    archived: bool = False
    #: shown by the export; restored through ``links`` (kept here so a line reads back as written)
    superseded_by: MemoryId | None = None
    superseded_at: UtcDateTime | None = None
    links: list[LinkLine] = Field(default_factory=list, max_length=1000)
    embedding: list[float] | None = Field(None, min_length=EMBEDDING_DIM, max_length=EMBEDDING_DIM)

    @field_validator("embedding")
    @classmethod
    def _embedding(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if not all(math.isfinite(x) for x in value) or not any(value):
            raise ValueError("embedding must be finite and not all zero")
        return value


def _counted(value: list[Any], name: str, limit: int, unit: str) -> list[Any]:
    """``value`` when it holds 1 to ``limit`` entries."""
    if not value:
        raise ValueError(f"{name} must not be empty")
    if len(value) > limit:
        raise ValueError(f"at most {limit} {unit}")
    return value


class ImportRequest(_Strict):
    """``POST /users/{user_id}/import`` as JSON: the lines of the NDJSON form as an array."""

    #: validated one by one (an invalid one is rejected alone, as a line is), so typed Any here
    memories: list[Any] = Field(description="ImportLine objects; memories[i] is reported as line i + 1",
                                json_schema_extra={"minItems": 1, "maxItems": _limit("max_import_lines"),
                                                   "items": {"$ref": "#/components/schemas/ImportLine"}})

    @field_validator("memories")
    @classmethod
    def _memories(cls, value: list[Any]) -> list[Any]:
        return _counted(value, "memories", get_settings().max_import_lines, "memories per import request")


#: An import line as the use case takes it: its number (from 1) and the line validated, or the
#: error to report for it.
NumberedLine = tuple[int, "ImportLine | ValidationFailed"]


def parse_import(body: bytes, *, json_content: bool) -> list[NumberedLine]:
    """``POST /users/{user_id}/import``'s body, each line validated alone: a JSON body
    ``{"memories": [...]}`` (``json_content``: sent as application/json), ``memories[i]`` as
    line ``i + 1``; anything else is NDJSON, one memory per line. A line of NDJSON never has a
    ``memories`` member, so NDJSON sent as application/json, as clients did before the JSON form
    existed, is still NDJSON. Too many lines, or none, is a 422 for the whole request."""
    if json_content:
        try:
            data: dict[str, Any] | None = load_json_object(body, "request body", BadRequest)
        except BadRequest:
            data = None  # several lines: NDJSON
        if data is not None and "memories" in data:
            request = parse_model(ImportRequest, data)
            return list(enumerate(parse_each(ImportLine, request.memories, objects_only=False), start=1))
    limit = get_settings().max_import_lines
    numbered = [(number, raw) for number, raw in enumerate(body.split(b"\n"), start=1) if raw.strip()]
    if len(numbered) > limit:
        raise ValidationFailed(f"at most {limit} lines per import request")
    if not numbered:
        raise ValidationFailed("the body has no lines; NDJSON (one memory per line) is expected")
    lines: list[NumberedLine] = []
    for number, raw in numbered:
        try:
            record = load_json_object(raw, "line", ValidationFailed)
        except ValidationFailed as exc:
            lines.append((number, exc))
            continue
        [line] = parse_each(ImportLine, [record])
        lines.append((number, line))
    return lines


class MemoryPatch(_Strict):
    """``PATCH /memory/{id}`` body: any of the fields; ``context_id`` and ``expires_at`` may be
    null (cleared). Only the fields present in the body change."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    # Only context_id and expires_at may be null; for the others null is refused, and the
    # schema leaves null out (SkipJsonSchema) while None still stands for "not given".
    content: str | SkipJsonSchema[None] = Field(None, json_schema_extra=optional(**_CONTENT_SCHEMA))
    content_type: ContentTypeName | SkipJsonSchema[None] = Field(None, json_schema_extra=optional())
    tags: list[str] | SkipJsonSchema[None] = Field(None, json_schema_extra=optional(**_TAGS_SCHEMA))
    importance: Score | SkipJsonSchema[None] = Field(None, json_schema_extra=optional())
    confidence: Score | SkipJsonSchema[None] = Field(None, json_schema_extra=optional())
    metadata: dict[str, Any] | SkipJsonSchema[None] = Field(None, json_schema_extra=optional())
    context_id: Identifier | None = None
    expires_at: UtcDateTime | None = Field(None, description=EXPIRES_AT_RULE + "; null: never expires",
                                           json_schema_extra=EXPIRES_AT_SCHEMA)
    #: false restores an archived memory; true archives it
    archived: bool | SkipJsonSchema[None] = Field(None, json_schema_extra=optional())
    #: null reinstates a superseded memory (back in search); an id of another of the user's
    #: memories marks this one superseded by it
    superseded_by: MemoryId | None = Field(None, description="null: reinstate (back in search); an id: "
                                                              "superseded by that memory")

    @field_validator("content")
    @classmethod
    def _content(cls, value: str | None) -> str | None:
        return None if value is None else _valid_content(value)

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, value: str | None) -> str | None:
        return None if value is None else _valid_content_type(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_tags(value)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _valid_metadata(value)

    @field_validator("expires_at")
    @classmethod
    def _expires_at(cls, value: datetime | None) -> datetime | None:
        return _valid_expires_at(value)

    @model_validator(mode="after")
    def _fields(self) -> MemoryPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        nullable = {"context_id", "expires_at", "superseded_by"}
        cleared = [f for f in self.model_fields_set - nullable if getattr(self, f) is None]
        if cleared:
            raise ValueError(f"{', '.join(sorted(cleared))} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields present in the body with their (validated) values."""
        return {f: getattr(self, f) for f in self.model_fields_set}


def _check_range(created_after: datetime | None, created_before: datetime | None) -> None:
    if created_after and created_before and created_after > created_before:
        raise ValueError("created_after must not be later than created_before")


class ListQuery(_Strict):
    """Query of ``GET /memories``."""

    user_id: Identifier
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=200, description="next_cursor of the previous page",
                               json_schema_extra=CURSOR_SCHEMA)
    content_type: ContentTypeName | None = None
    tag: str | None = Field(None, min_length=1, max_length=256, json_schema_extra=_text_schema(_limit("max_tag_chars")))
    context_id: Identifier | None = None
    created_after: UtcDateTime | None = None
    created_before: UtcDateTime | None = None
    include_archived: bool = False
    include_superseded: bool = False

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, value: str | None) -> str | None:
        return None if value is None else _valid_content_type(value)

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        return None if value is None else _check_tags([value])[0]

    @model_validator(mode="after")
    def _range(self) -> ListQuery:
        _check_range(self.created_after, self.created_before)
        return self

    def filters(self) -> SearchFilters:
        """The listing's filters, as a search states them (validated already, with this query)."""
        return SearchFilters.model_construct(
            content_types=[self.content_type] if self.content_type else None,
            tags=[self.tag] if self.tag else None, context_id=self.context_id,
            created_after=self.created_after, created_before=self.created_before)


class BatchRequest(_Strict):
    #: validated one by one (an invalid item is rejected alone), so typed Any here
    items: list[Any] = Field(json_schema_extra={
        "minItems": 1, "maxItems": _limit("max_batch_items"), "items": {"$ref": "#/components/schemas/IngestItem"}})

    @field_validator("items")
    @classmethod
    def _items(cls, value: list[Any]) -> list[Any]:
        return _counted(value, "items", get_settings().max_batch_items, "items per batch")

    def parsed_items(self) -> list[IngestItem | ValidationFailed]:
        """Each item as an :class:`IngestItem`, or the error to report in its place."""
        return parse_each(IngestItem, self.items)


def parse_each(model: type[M], raws: Sequence[Any], *, objects_only: bool = True) -> list[M | ValidationFailed]:
    """Each of ``raws`` validated into ``model``, or the error to report in its place (an item
    of a batch, an event or an import line is rejected alone). ``objects_only``: anything but a
    JSON object is refused as such, before the model looks at it."""
    out: list[M | ValidationFailed] = []
    for raw in raws:
        try:
            if objects_only and not isinstance(raw, dict):
                raise ValidationFailed("each item must be a JSON object")
            out.append(parse_model(model, raw))
        except ValidationFailed as exc:
            out.append(exc)
    return out


#: The ingest fields an event may carry (``return_similar`` asks for an answer nobody reads).
EVENT_ITEM_FIELDS = frozenset(IngestItem.model_fields) - {"return_similar"}


def parse_ingest_events(payload: dict[str, Any]) -> tuple[list[IngestItem | ValidationFailed], list[str | None]]:
    """The subscriber's direct invoke ``{"kind": "ingest_events", "events": [{"event_id",
    "data"}]}``: each event as an ingest item (``events.event_to_item``) or the error to report
    for it, and its event id (None when it has none). A payload that is not such a list is a
    400: the invocation fails, nothing is reported per event."""
    events = payload.get("events")
    limit = get_settings().max_batch_items
    if not isinstance(events, list) or not events or len(events) > limit:
        raise BadRequest(f"events must be a list of 1..{limit} entries")
    content_types = get_settings().content_types
    items: list[IngestItem | ValidationFailed] = []
    event_ids: list[str | None] = []
    for entry in events:
        entry = entry if isinstance(entry, dict) else {}
        raw_id = entry.get("event_id")
        event_id = str(raw_id) if raw_id not in (None, "") else None
        data = event_to_item(entry.get("data"), item_fields=EVENT_ITEM_FIELDS, content_types=content_types)
        [item] = parse_each(IngestItem, [data])
        if event_id is not None and not isinstance(item, ValidationFailed):
            try:
                check_identifier(event_id, "event_id")
            except ValidationFailed as exc:
                item = exc
        items.append(item)
        event_ids.append(event_id)
    return items, event_ids


class SearchFilters(_Strict):
    content_types: list[ContentTypeName] | None = None
    tags: list[str] | None = Field(None, json_schema_extra=_TAGS_SCHEMA)
    min_importance: Score | None = None
    context_id: Identifier | None = None
    created_after: UtcDateTime | None = None
    created_before: UtcDateTime | None = None
    #: a JSON object the memory's metadata must contain (jsonb ``@>``)
    metadata: dict[str, Any] | None = None
    source_types: list[Identifier] | None = Field(None, max_length=100)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _valid_metadata(value)

    @field_validator("content_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        allowed = get_settings().content_types
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise ValueError(f"content_types must be among: {', '.join(allowed)}")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_tags(value)

    @model_validator(mode="after")
    def _range(self) -> SearchFilters:
        _check_range(self.created_after, self.created_before)
        return self


def _query(value: str) -> str:
    value = sanitize(value)
    if not value:
        raise ValueError("query must not be empty")
    limit = get_settings().max_content_chars
    if len(value) > limit:
        raise ValueError(f"query has at most {limit} characters")
    return value


class _SearchCommon(_Strict):
    """What ``POST /search`` and ``POST /context`` share."""

    query: str = Field(examples=["what does the user drink in the morning?"], json_schema_extra=_CONTENT_SCHEMA)
    user_id: Identifier = Field(examples=["alice"])
    top_k: int = Field(10, ge=1, json_schema_extra={"maximum": _limit("max_top_k")})
    filters: SearchFilters = Field(default_factory=lambda: SearchFilters())
    # The name predates the blended ``relevance`` score; the threshold is on cosine similarity.
    min_relevance: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False, title="Minimum cosine similarity",
        description="A cosine-similarity threshold, not a threshold on the blended `relevance` score: results "
                    "whose `similarity` (cosine between the query's and the memory's embeddings) is below it "
                    "are dropped, whatever their lexical score. null keeps every result (for /context: the "
                    "server's default threshold, MEMORY_CONTEXT_MIN_RELEVANCE).")
    include_archived: bool = Field(False, description="also rank archived memories (an exact scan of them)")
    include_superseded: bool = Field(False, description="also rank superseded memories (an exact scan of them)")

    @field_validator("query")
    @classmethod
    def _q(cls, value: str) -> str:
        return _query(value)

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value: int) -> int:
        limit = get_settings().max_top_k
        if value > limit:
            raise ValueError(f"top_k is at most {limit}")
        return value


class SearchRequest(_SearchCommon):
    """``POST /search`` body."""

    explain: bool = Field(False, description="give each result the parts of its score (`explain`: cosine, "
                          "lexical BM25, the fused match, importance, recency, relevance)")


class ContextRequest(_SearchCommon):
    """``POST /context`` body: a search plus a token budget."""

    max_tokens: int = Field(2000, ge=1, json_schema_extra={"maximum": _limit("max_context_tokens")})
    top_k: int = Field(20, ge=1, json_schema_extra={"maximum": _limit("max_top_k")})
    expand_relations: bool = Field(
        False, description="add the memories the selected ones extend or are derived_from, after them, "
                           "within max_tokens")

    @field_validator("max_tokens")
    @classmethod
    def _max_tokens(cls, value: int) -> int:
        limit = get_settings().max_context_tokens
        if value > limit:
            raise ValueError(f"max_tokens is at most {limit}")
        return value


_ID_RE = re.compile(ID_PATTERN)


def check_identifier(value: str | None, name: str) -> str:
    """Validate an id taken from a path or query string (same rule as body ids)."""
    if value is None or value == "":
        raise ValidationFailed(f"{name} is required")
    if not _ID_RE.match(value):
        raise ValidationFailed(f"{name} must match {ID_PATTERN}")
    return value


def parse_memory_id(value: str) -> uuid.UUID:
    """A memory id taken from a path (422 when it is not a UUID)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationFailed("memory id must be a UUID") from None



def validation_message(errors: Sequence[Any]) -> str:
    """A readable one-line summary of pydantic errors (``ValidationError.errors()``, also what
    FastAPI reports for a bad path or query parameter), without echoing input values."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "body"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts[:10]) or "invalid request"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json_object(raw: bytes, what: str, error: type[MemoryServiceError]) -> dict[str, Any]:
    """``raw`` as a JSON object, or ``error`` naming ``what`` (NaN/Infinity are refused:
    PostgreSQL's jsonb cannot store them)."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise error(f"{what} is not valid JSON") from None
    if not isinstance(data, dict):
        raise error(f"{what} must be a JSON object")
    return data


def parse_model(model: type[M], raw: Any) -> M:
    """Validate ``raw`` into ``model`` or raise 422 with a readable message."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed(validation_message(exc.errors(include_input=False, include_url=False))) from None
