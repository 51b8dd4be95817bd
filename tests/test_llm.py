"""LLM attributes against a loopback server that speaks the OpenAI chat-completions protocol."""

import json
import time

import pytest
from hostile import tried
from loopback import LoopbackHandler, LoopbackServer

from entitynet.errors import ConfigError, EntityNetError
from entitynet.records import Entity
from entitynet.text.llm import CATEGORIES_ANIMAL, LLMClient, parse_attributes
from entitynet.text.queries import build_queries

LION = Entity(
    id="Q140",
    label="lion",
    aliases=("Panthera leo",),
    description="big cat",
    root="Q729",
    natural_type="Q7377",
    natural_type_label="mammal",
    sitelinks=200,
    kind="taxon",
)

GOOD = {
    "attributes": [
        {"category": "body parts", "attribute": "mane", "query": "male lion mane close-up"},
        {"category": "color", "attribute": "tawny", "query": "tawny lion in grass"},
        {"category": "color", "attribute": "Tawny", "query": "lion tawny fur"},  # duplicate attribute
        {"category": "behavior and movement", "attribute": "none", "query": "lion none"},  # junk
        {"category": "environment", "attribute": "savanna", "query": "savanna at sunset"},  # no entity name
        {"category": "smell", "attribute": "musky", "query": "musky lion"},  # unknown category
        {"category": "shape and size", "attribute": "x" * 150, "query": "lion"},  # too long
    ]
}


class ChatServer:
    def __init__(self, answers):
        self.answers, self.requests = list(answers), []
        outer = self

        class Handler(LoopbackHandler):
            def do_POST(self):
                body = json.loads(self.read_body())
                outer.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                status, content = outer.answers.pop(0) if outer.answers else (200, json.dumps(GOOD))
                payload = json.dumps(
                    {
                        "id": "c1",
                        "object": "chat.completion",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                )
                self.send_json(status, payload if status == 200 else {"error": "busy"})

        self.server = LoopbackServer(Handler)
        self.url = f"{self.server.base}/v1"

    def close(self):
        self.server.close()


@pytest.fixture
def chat():
    servers = []

    def make(answers=()):
        servers.append(ChatServer(answers))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_request_is_schema_constrained_and_answer_validated(chat, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    srv = chat()
    attrs = LLMClient(srv.url, "qwen2.5-7b-instruct", api_key_env="TEST_LLM_KEY").attributes(LION)
    assert [(a.category, a.value, a.query) for a in attrs] == [
        ("body parts", "mane", "male lion mane close-up"),
        ("color", "tawny", "tawny lion in grass"),
    ]
    (req,) = srv.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    fmt = req["body"]["response_format"]
    assert fmt["type"] == "json_schema"
    enum = fmt["json_schema"]["schema"]["properties"]["attributes"]["items"]["properties"]["category"]["enum"]
    assert enum == list(CATEGORIES_ANIMAL) and req["body"]["model"] == "qwen2.5-7b-instruct"


def test_invalid_answers_are_retried_then_given_up(chat):
    srv = chat([(200, "not json"), (503, ""), (200, '{"attrs": []}'), (200, json.dumps(GOOD))])
    client = LLMClient(srv.url, "m", max_retries=2)
    assert len(client.attributes(LION, tries=3)) == 2
    assert len(srv.requests) == 4
    srv2 = chat([(200, "nope")] * 3)
    assert LLMClient(srv2.url, "m").attributes(LION, tries=3) is None


def test_llm_attributes_become_attribute_noun_queries(chat):
    srv = chat()
    attrs = LLMClient(srv.url, "m").attributes(LION)
    import dataclasses

    qs = build_queries([dataclasses.replace(LION, attributes=tuple(attrs))])
    llm = [q for q in qs if q.property == "llm"]
    assert [(q.kind, q.text, q.attribute) for q in llm] == [
        ("attribute-noun", "male lion mane close-up", "mane"),
        ("attribute-noun", "tawny lion in grass", "tawny"),
    ]


def test_parse_rejects_non_schema_json():
    with pytest.raises(ValueError):
        parse_attributes('{"attributes": 3}', LION, CATEGORIES_ANIMAL)


def test_unreachable_endpoint_and_bad_config():
    from conftest import free_port

    with pytest.raises(EntityNetError, match="failed after 2 attempts, last: connection failed"):
        LLMClient(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=1).attributes(LION)
    with pytest.raises(ConfigError, match="not an http"):
        LLMClient("localhost:8000", "m")
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR"):
        LLMClient("http://127.0.0.1:1/v1", "m", api_key_env="NO_SUCH_KEY_VAR")


def test_a_trickling_or_endless_llm_is_cut_off(hostile):
    tried("llm", 3)
    server = hostile
    for path in ("/trickle-body/v1", "/trickle-headers/v1"):
        t = time.monotonic()
        with pytest.raises(EntityNetError) as e:
            LLMClient(server.base + path, "m", timeout=5.0, total_timeout=1.5).attributes(LION)
        assert time.monotonic() - t < 2.5  # the server would trickle for 25-30 s
        assert "gave no whole answer within the total timeout of 1.5 s" in str(e.value)
    with pytest.raises(
        EntityNetError,
        match=r"grew past the cap of 1 MiB \(reading stopped there\), far more than a list of attributes",
    ):
        LLMClient(server.base + "/endless/v1", "m", max_bytes=1 << 20).attributes(LION)
    assert server.handler.done.wait(10) and sum(server.handler.sent) < 48 << 20
