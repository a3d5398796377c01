"""Body routing and Vertex instances → engine requests → predictions, without a server."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdeploy.serve.translate import (
    CHAT_ROUTE,
    COMPLETIONS_ROUTE,
    BadRequest,
    engine_route,
    instance_body,
    parse_object,
    predictions,
    vertex_instances,
)

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_route_by_body_shape():
    assert engine_route(CHAT) == CHAT_ROUTE
    assert engine_route({"prompt": "hi"}) == COMPLETIONS_ROUTE
    # Chat first, as vLLM's own SageMaker route tries it first.
    assert engine_route({**CHAT, "prompt": "x"}) == CHAT_ROUTE
    with pytest.raises(BadRequest, match="messages"):
        engine_route({"input": "embed me"})


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b'{"a": }'])
def test_malformed_json_is_a_bad_request(raw):
    with pytest.raises(BadRequest, match="malformed JSON"):
        parse_object(raw)


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"text"', b"null"])
def test_only_objects_are_accepted(raw):
    with pytest.raises(BadRequest, match="JSON object"):
        parse_object(raw)


def test_raw_body_is_not_a_vertex_batch():
    assert vertex_instances(CHAT) is None


def test_vertex_batch_is_validated():
    assert vertex_instances({"instances": ["a"]}) == (["a"], {})
    assert vertex_instances({"instances": ["a"], "parameters": {"max_tokens": 5}}) == (
        ["a"],
        {"max_tokens": 5},
    )
    for bad in ({"instances": []}, {"instances": "a"}, {"instances": ["a"], "parameters": [1]}):
        with pytest.raises(BadRequest):
            vertex_instances(bad)


def test_instances_take_three_shapes_and_merge_parameters():
    params = {"max_tokens": 8, "temperature": 0.1}
    assert instance_body(0, "hello", params) == {"prompt": "hello", **params}
    assert instance_body(1, {"prompt": "p", "max_tokens": 2}, params) == {
        "prompt": "p",
        "max_tokens": 2,  # the instance's own value wins
        "temperature": 0.1,
    }
    assert instance_body(2, CHAT, params) == {**CHAT, **params}


def test_bad_instances_name_their_index():
    with pytest.raises(BadRequest, match=r"instances\[3\]"):
        instance_body(3, {"text": "x"}, {})
    with pytest.raises(BadRequest, match=r"instances\[0\].*stream"):
        instance_body(0, "x", {"stream": True})


@given(
    prompt=st.text(max_size=20),
    params=st.dictionaries(
        st.sampled_from(["max_tokens", "top_p", "seed", "n"]), st.integers(), max_size=4
    ),
)
def test_merge_keeps_every_parameter_and_the_prompt(prompt, params):
    body = instance_body(0, prompt, params)
    assert body["prompt"] == prompt
    assert all(body[k] == v for k, v in params.items())
    assert engine_route(body) == COMPLETIONS_ROUTE
    json.dumps(body)  # always serialisable for the engine


def test_predictions_keep_order_and_model_id():
    assert predictions([{"a": 1}, {"b": 2}], None) == {"predictions": [{"a": 1}, {"b": 2}]}
    assert predictions([], "42") == {"predictions": [], "deployedModelId": "42"}
