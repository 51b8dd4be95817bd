"""Optional: visual attributes of entities from an LLM, through any OpenAI-compatible
chat-completions endpoint (vLLM, Ollama, llama.cpp server, hosted APIs). Off by default.

The request asks for JSON constrained by a JSON schema (`response_format.type = json_schema`);
the answer is validated again here, since not every server enforces the schema. The categories
follow the reference implementation (7 for animals, 6 for plants and other things).

Each call has one total deadline (the answer, retries and their waits) and a size cap on the
answer (`entitynet.http_policy.request`): a server that trickles or streams without end is cut off.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import requests

from entitynet.errors import ConfigError, EntityNetError
from entitynet.http_policy import (
    Backoff,
    Deadline,
    DeadlinePassed,
    ResponseTooLarge,
    request,
    retry_after_seconds,
    session,
    why,
)
from entitynet.records import Attribute, Entity


class LLMRefusal(EntityNetError):
    """The model declined to answer (the `refusal` of a chat-completions message): asking again
    gets the same, so the caller decides without it."""


CATEGORIES_ANIMAL = (
    "color",
    "pattern and texture",
    "body parts",
    "shape and size",
    "behavior and movement",
    "environment",
    "other",
)
CATEGORIES_PLANT = ("color", "pattern and texture", "plant parts", "shape and size", "environment", "other")
CATEGORIES_THING = ("color", "pattern and texture", "parts", "shape and size", "environment", "other")
MAX_PER_CATEGORY = 10
MAX_CHARS = 100
_JUNK = ("none", "n/a", "not applicable", "unknown", "note")


def categories_for(entity: Entity) -> tuple[str, ...]:
    if entity.root == "Q729":
        return CATEGORIES_ANIMAL
    if entity.root == "Q756":
        return CATEGORIES_PLANT
    return CATEGORIES_THING


def schema(categories: tuple[str, ...]) -> dict:
    item = {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": list(categories)},
            "attribute": {"type": "string", "maxLength": MAX_CHARS},
            "query": {"type": "string", "maxLength": MAX_CHARS},
        },
        "required": ["category", "attribute", "query"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "attributes": {"type": "array", "items": item, "maxItems": MAX_PER_CATEGORY * len(categories)}
        },
        "required": ["attributes"],
        "additionalProperties": False,
    }


def messages(entity: Entity, categories: tuple[str, ...]) -> list[dict]:
    names = ", ".join(entity.synonyms()[:6])
    system = (
        "You list visual attributes of things so that a web image search can find photos in which the "
        "attribute is visible. Answer with JSON only."
    )
    user = (
        f"Entity: {entity.label} ({names}); {entity.description or 'no description'}; "
        f"a kind of {entity.natural_type_label or 'thing'}.\n"
        f"For each category of [{', '.join(categories)}], give up to {MAX_PER_CATEGORY} visual attributes, "
        "each with a short image-search query that contains the entity's name and shows the attribute. "
        "Leave a category out if nothing visual applies."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_attributes(content: str, entity: Entity, categories: tuple[str, ...]) -> list[Attribute]:
    """Validated attributes from the model's answer; raises ValueError if the answer is not the schema's JSON."""
    doc = json.loads(content)
    items = doc["attributes"] if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ValueError("no 'attributes' list")
    names = [n.casefold() for n in entity.synonyms()]
    per_category: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    out = []
    for it in items:
        if not isinstance(it, dict):
            continue
        cat, attr, query = it.get("category"), it.get("attribute"), it.get("query")
        if not (isinstance(cat, str) and isinstance(attr, str) and isinstance(query, str)):
            continue
        if cat not in categories:
            continue
        attr, query = " ".join(attr.split()), " ".join(query.split())
        if not attr or not query or len(attr) > MAX_CHARS or len(query) > MAX_CHARS:
            continue
        if attr.casefold().startswith(_JUNK) or query.casefold().startswith(_JUNK):
            continue
        if not any(n in query.casefold() for n in names):  # the query must name the entity
            continue
        key = (cat, attr.casefold())
        if key in seen or per_category.get(cat, 0) >= MAX_PER_CATEGORY:
            continue
        seen.add(key)
        per_category[cat] = per_category.get(cat, 0) + 1
        out.append(Attribute(property="llm", value=attr, category=cat, query=query))
    return out


@dataclass
class LLMClient:
    """POST {base_url}/chat/completions with a JSON-schema response format."""

    base_url: str
    model: str
    api_key_env: str | None = None
    timeout: float = 120.0  # per socket read: a model may think a while before its first byte
    max_retries: int = 3
    temperature: float = 0.7
    backoff: Backoff = Backoff(1.0, 30.0)
    total_timeout: float = 600.0  # one call: the answer, retries and their waits
    max_bytes: int = 16 << 20  # one answer: a list of attributes is a few KiB

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"--llm-endpoint {self.base_url!r} is not an http(s) URL")
        self.session = session()
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(f"environment variable {self.api_key_env} (the LLM API key) is not set")
            self.session.headers["Authorization"] = f"Bearer {key}"

    def complete(self, msgs: list[dict], json_schema: dict, name: str = "attributes") -> str:
        """The model's answer (the message content); an LLMRefusal when it declined, an EntityNetError
        (one line) when the endpoint gave no answer after the retries."""
        url = self.base_url.rstrip("/") + "/chat/completions"
        body = {
            "model": self.model,
            "messages": msgs,
            "temperature": self.temperature,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": name, "strict": True, "schema": json_schema},
            },
        }
        last, wait = "", None
        deadline = Deadline(self.total_timeout)
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = self.backoff.delay(attempt - 1, wait)
                if not deadline.allows(delay):
                    raise self._late(url, last)
                time.sleep(delay)
            wait = None
            try:
                r = request(
                    self.session,
                    "POST",
                    url,
                    json=body,
                    allow_redirects=False,  # a redirected POST loses its body (and maybe the key)
                    deadline=deadline,
                    max_bytes=self.max_bytes,
                    connect_timeout=10.0,
                    read_timeout=self.timeout,
                )
            except ResponseTooLarge as e:
                raise EntityNetError(
                    f"LLM endpoint {url}: {e}, far more than a list of attributes; "
                    "check that --llm-endpoint is an OpenAI-compatible chat-completions API"
                ) from None
            except DeadlinePassed:
                raise self._late(url, last) from None
            except requests.RequestException as e:
                last = f"connection failed ({why(e)})"
                continue
            if r.status == 429 or r.status >= 500:
                last = f"HTTP {r.status}"
                wait = retry_after_seconds(r.headers.get("Retry-After"))
                continue
            if r.status != 200:
                raise EntityNetError(f"LLM endpoint {url} answered HTTP {r.status}: {r.text()[:200]!r}")
            try:
                message = r.json()["choices"][0]["message"]
                content, refusal = message.get("content"), message.get("refusal")
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                last = "not a chat-completions response"
                continue
            if isinstance(refusal, str) and refusal.strip():
                raise LLMRefusal(f"the model refused: {' '.join(refusal.split())[:200]}")
            if isinstance(content, str):
                return content
            last = "a message without content"
        raise EntityNetError(f"LLM endpoint {url} failed after {self.max_retries + 1} attempts, last: {last}")

    def _late(self, url: str, last: str) -> EntityNetError:
        return EntityNetError(
            f"LLM endpoint {url} gave no whole answer within the total timeout of {self.total_timeout:g} s"
            + (f" (last: {last})" if last else "")
            + "; check the server, or use a faster model"
        )

    def attributes(self, entity: Entity, tries: int = 3) -> list[Attribute] | None:
        """Attributes for one entity, or None when the model gave no valid answer in `tries`."""
        cats = categories_for(entity)
        for _ in range(tries):
            try:
                content = self.complete(messages(entity, cats), schema(cats))
            except LLMRefusal:
                return None
            try:
                return parse_attributes(content, entity, cats)
            except (ValueError, KeyError, TypeError):
                continue
        return None
