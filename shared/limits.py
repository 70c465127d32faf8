"""Service-side limits of Firestore and Pub/Sub, with their source, and the bounded JSON parser.

``shared`` is the bottom layer (service code): these are the limits the services' code must
respect at run time. ``infra/limits.py`` holds the limits of what the program declares (Cloud
Run, Pub/Sub subscriptions, Scheduler, Firestore ids); it cannot be imported from here, so the
run-time ones live here and anything above (``infra``, ``policy``, the operator tools)
imports them rather than restating them.

Firestore, https://cloud.google.com/firestore/quotas ("Limits"):

* a commit holds at most 500 writes (:data:`FIRESTORE_MAX_WRITES_PER_COMMIT`);
* an API request is at most 10 MiB (:data:`FIRESTORE_MAX_REQUEST_BYTES`);
* a document is at most 1 MiB (1,048,576 bytes) as Firestore counts it
  (:data:`FIRESTORE_MAX_DOCUMENT_BYTES`; :func:`firestore_size` counts the same way,
  https://cloud.google.com/firestore/docs/storage-size);
* maps and arrays nest at most 20 levels (:data:`FIRESTORE_MAX_NESTING_DEPTH`);
* about one sustained write per second per document
  (:data:`FIRESTORE_SUSTAINED_WRITES_PER_DOC_S`, "Soft limits" and
  https://cloud.google.com/firestore/docs/solutions/counters);
* 500 writes per second to a collection whose documents carry a monotonically increasing
  indexed field (:data:`FIRESTORE_SEQUENTIAL_INDEX_WRITES_S`, "Soft limits"; the completion
  documents' ``completed_at`` is one: a batch above that rate needs the field exempted).

Pub/Sub, https://cloud.google.com/pubsub/quotas#resource_limits:

* a message (data plus attributes) is at most 10 MB (:data:`PUBSUB_MAX_MESSAGE_BYTES`);
* a publish request holds at most 1,000 messages and 10 MB.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

__all__ = [
    "FIRESTORE_MAX_DOCUMENT_BYTES",
    "FIRESTORE_MAX_NESTING_DEPTH",
    "FIRESTORE_MAX_REQUEST_BYTES",
    "FIRESTORE_MAX_WRITES_PER_COMMIT",
    "FIRESTORE_SEQUENTIAL_INDEX_WRITES_S",
    "FIRESTORE_SUSTAINED_WRITES_PER_DOC_S",
    "MAX_JSON_DEPTH",
    "MAX_PUSH_BODY_BYTES",
    "PUBSUB_MAX_MESSAGE_BYTES",
    "PUBSUB_MAX_MESSAGES_PER_PUBLISH",
    "TooDeep",
    "TooLarge",
    "document_size",
    "firestore_size",
    "json_depth",
    "loads_bounded",
]

FIRESTORE_MAX_WRITES_PER_COMMIT = 500
FIRESTORE_MAX_REQUEST_BYTES = 10 * 1024 * 1024
FIRESTORE_MAX_DOCUMENT_BYTES = 1024 * 1024
FIRESTORE_MAX_NESTING_DEPTH = 20
FIRESTORE_SUSTAINED_WRITES_PER_DOC_S = 1.0
FIRESTORE_SEQUENTIAL_INDEX_WRITES_S = 500

PUBSUB_MAX_MESSAGE_BYTES = 10_000_000
PUBSUB_MAX_MESSAGES_PER_PUBLISH = 1000

#: The largest push request body a service reads: a 10 MB message is base64 in the envelope
#: (4/3) plus the envelope itself. Anything larger did not come from Pub/Sub.
MAX_PUSH_BODY_BYTES = PUBSUB_MAX_MESSAGE_BYTES * 4 // 3 + 64 * 1024
#: JSON nesting the services accept: the envelope's own levels plus Firestore's 20 (a deeper
#: value could never be stored, and Python's parser hits its recursion limit near 1,000).
MAX_JSON_DEPTH = FIRESTORE_MAX_NESTING_DEPTH + 4


class TooLarge(ValueError):
    """A value exceeds a size limit (permanent: the same bytes will never fit)."""


class TooDeep(ValueError):
    """JSON nested deeper than allowed (permanent)."""


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1); iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((c, depth) for c in children if isinstance(c, dict | list))
    return deepest


def loads_bounded(
    data: bytes | str, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH, what: str = "JSON"
) -> Any:
    """``json.loads`` that refuses, as a permanent error, what no retry can fix: more than
    ``max_bytes`` (:class:`TooLarge`), nesting deeper than ``max_depth`` or deep enough to
    exhaust the parser's recursion (:class:`TooDeep`). Raises ``json.JSONDecodeError`` and
    ``UnicodeDecodeError`` as ``json.loads`` does."""
    if len(data) > max_bytes:
        raise TooLarge(f"{what} of {len(data):,} bytes exceeds the limit of {max_bytes:,} bytes")
    try:
        value = json.loads(data)
    except RecursionError:
        raise TooDeep(f"{what} is nested too deeply (limit {max_depth} levels)") from None
    depth = json_depth(value)
    if depth > max_depth:
        raise TooDeep(f"{what} is nested {depth} levels deep (limit {max_depth})")
    return value


def _string_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass")) + 1


def firestore_size(value: Any) -> int:
    """A value's storage size as Firestore counts it (the 1 MiB document limit applies to this):
    strings UTF-8 bytes + 1, numbers and timestamps 8, booleans and null 1, bytes their length,
    maps the sum of their keys (as strings) and values, arrays the sum of their values.
    https://cloud.google.com/firestore/docs/storage-size. Iterative (no recursion limit)."""
    total = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if node is None or isinstance(node, bool):
            total += 1
        elif isinstance(node, int | float | datetime):
            total += 8
        elif isinstance(node, str):
            total += _string_size(node)
        elif isinstance(node, bytes | bytearray):
            total += len(node)
        elif isinstance(node, Mapping):
            for k, v in node.items():
                total += _string_size(str(k))
                stack.append(v)
        elif isinstance(node, list | tuple):
            stack.extend(node)
        else:  # references, geo points, sentinels: small and fixed
            total += 16
    return total


def document_size(path_segments: tuple[str, ...], fields: Mapping[str, Any]) -> int:
    """A document's size: its name (segments + 16), its fields, and 32 bytes of overhead."""
    name = sum(_string_size(s) for s in path_segments) + 16
    return name + firestore_size(dict(fields)) + 32
