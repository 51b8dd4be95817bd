"""A chat-completions server on 127.0.0.1 that the tests script: it speaks the OpenAI protocol
(`POST /v1/chat/completions`, a `choices[0].message` with `content` or `refusal`), answers from a
`respond(body)` function, and plays the faults a real server has, one per request, from a script:

    "malformed"   content that is not JSON
    "schema"      JSON of the wrong shape (a string where a boolean belongs, an unknown id)
    "refusal"     the model declines (`message.refusal`, no content)
    ("429", s)    HTTP 429 with Retry-After: s
    "stall"       headers and half a body, then nothing for 30 s (a stalled stream)
    "500"         HTTP 500
    "hold"        no answer until `release()` (a kill lands while the request is open)
"""

from __future__ import annotations

import json
import re
import threading
import time

from loopback import LoopbackHandler, LoopbackServer


def completion(content: str | None, refusal: str | None = None) -> dict:
    message: dict = {"role": "assistant", "content": content}
    if refusal is not None:
        message["refusal"] = refusal
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


def classify_responder(non_visual: set[str], not_in_kingdom: set[str] = frozenset(), natural: int = 0):
    """Answers `entitynet kg classify` requests as a model that knows the truth would: each entity
    listed in the prompt ("- Q123: label - ... Candidates: Q1 x; Q2 y"), visual unless in
    `non_visual`, its natural type the `natural`-th candidate."""

    def respond(body: dict) -> str:
        user = body["messages"][-1]["content"]
        living = "in_kingdom" in json.dumps(body["response_format"])
        out = []
        for line in user.splitlines():
            m = re.match(r"- (Q\d+): .*Candidates: (.*)$", line)
            if not m:
                continue
            e, cands = m.group(1), re.findall(r"(Q\d+) ", m.group(2) + " ")
            item = {
                "id": e,
                "natural_type": cands[natural] if len(cands) > natural else "",
                "visual": e not in non_visual,
                "reason": "abstract" if e in non_visual else "can be photographed",
            }
            if living:
                item["in_kingdom"] = e not in not_in_kingdom
            out.append(item)
        return json.dumps({"entities": out})

    return respond


class ScriptedChat:
    def __init__(self, respond, script=()):
        self.respond, self.script = respond, list(script)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.held = threading.Event()
        self.released = threading.Event()
        outer = self

        class Handler(LoopbackHandler):
            def do_POST(self):
                body = json.loads(self.read_body())
                with outer.lock:
                    outer.requests.append(body)
                    step = outer.script.pop(0) if outer.script else None
                outer.play(self, step, body)

        self.server = LoopbackServer(Handler)
        self.url = f"{self.server.base}/v1"

    def play(self, h: LoopbackHandler, step, body: dict) -> None:
        if step is None:
            h.send_json(200, completion(self.respond(body)))
        elif step == "malformed":
            h.send_json(200, completion('{"entities": [{"id": '))
        elif step == "schema":
            wrong = json.loads(self.respond(body))
            for item in wrong["entities"]:
                item["visual"] = "yes"
            wrong["entities"].append({"id": "Q1", "natural_type": "", "visual": True, "reason": ""})
            h.send_json(200, completion(json.dumps(wrong)))
        elif step == "refusal":
            h.send_json(200, completion(None, refusal="I can't help with classifying these."))
        elif isinstance(step, tuple) and step[0] == "429":
            h.send_json(429, {"error": {"message": "rate limited"}}, headers={"Retry-After": str(step[1])})
        elif step == "stall":
            payload = json.dumps(completion(self.respond(body))).encode()
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload[: len(payload) // 2])
            h.wfile.flush()
            time.sleep(30)
        elif step == "500":
            h.send_json(500, {"error": {"message": "internal error"}})
        elif step == "hold":
            self.held.set()
            self.released.wait(60)
        else:
            raise AssertionError(f"unknown step {step!r}")

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.close()
