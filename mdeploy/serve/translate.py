"""
Request shapes: turn what a cloud sends into what vLLM's OpenAI server takes, and back.

Pure functions over parsed JSON, no I/O, so every rule here is tested without a server:

- an OpenAI body goes to `/v1/chat/completions` when it has `messages` and to
  `/v1/completions` when it has `prompt` (the order vLLM's own SageMaker route tries);
- a Vertex `{"instances": [...], "parameters": {...}}` body becomes one engine request per
  instance; an instance is a chat body, a completion body or a bare prompt string, and the
  shared `parameters` are merged under it (the instance's own keys win, being more specific);
- the engine's answers become `{"predictions": [...]}` in instance order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "CHAT_ROUTE",
    "COMPLETIONS_ROUTE",
    "ENGINE_POST_ROUTES",
    "BadRequest",
    "engine_route",
    "instance_body",
    "parse_object",
    "predictions",
    "vertex_instances",
    "wants_stream",
]

CHAT_ROUTE = "/v1/chat/completions"
COMPLETIONS_ROUTE = "/v1/completions"
ENGINE_POST_ROUTES = frozenset({CHAT_ROUTE, COMPLETIONS_ROUTE})


class BadRequest(ValueError):
    """The client sent something the adapter cannot route (answered with 400)."""


def parse_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be one JSON object."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    except RecursionError:  # e.g. 100,000 nested '[': the parser's recursion limit
        raise BadRequest("JSON body nested too deeply") from None
    if not isinstance(value, dict):
        raise BadRequest(f"expected a JSON object, got {type(value).__name__}")
    return value


def engine_route(body: Mapping[str, Any]) -> str:
    """Pick the engine route for an OpenAI body: `messages` → chat, `prompt` → completions."""
    if "messages" in body:
        return CHAT_ROUTE
    if "prompt" in body:
        return COMPLETIONS_ROUTE
    raise BadRequest(
        "cannot route this body: expected an OpenAI chat body (with 'messages') or a "
        "completion body (with 'prompt')"
    )


def wants_stream(body: Mapping[str, Any]) -> bool:
    """Whether the client asked for server-sent events."""
    return body.get("stream") is True


def vertex_instances(body: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]] | None:
    """
    Return (instances, parameters) for a Vertex predict body, or None for any other body.

    A body without `instances` is a raw request (rawPredict / streamRawPredict).
    """
    if "instances" not in body:
        return None
    instances, parameters = body["instances"], body.get("parameters") or {}
    if not isinstance(instances, list) or not instances:
        raise BadRequest("'instances' must be a non-empty list")
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be a JSON object")
    return instances, parameters


def instance_body(index: int, instance: Any, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Build the engine body for one Vertex instance, with the shared parameters merged in."""
    if isinstance(instance, str):
        own: dict[str, Any] = {"prompt": instance}
    elif isinstance(instance, dict) and ("messages" in instance or "prompt" in instance):
        own = instance
    else:
        raise BadRequest(
            f"instances[{index}]: expected a chat body (with 'messages'), a completion body "
            "(with 'prompt') or a prompt string"
        )
    merged = {**parameters, **own}
    if wants_stream(merged):
        raise BadRequest(
            f"instances[{index}]: 'stream' is not supported with 'instances'; send the OpenAI "
            "body itself (rawPredict / streamRawPredict) to stream"
        )
    return merged


def predictions(results: Sequence[Any], deployed_model_id: str | None) -> dict[str, Any]:
    """Wrap per-instance engine answers as a Vertex predict response."""
    out: dict[str, Any] = {"predictions": list(results)}
    if deployed_model_id:
        out["deployedModelId"] = deployed_model_id
    return out
