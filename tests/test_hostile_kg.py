"""Hostile knowledge graphs and hostile text on the terminal: literals no number can hold end in one
line that names the file and the value (not a hint about URLs), and labels, texts and errors that
carry control characters or terminal escape sequences are printed escaped, never obeyed."""

from __future__ import annotations

import json
import logging
import re

import pytest
from conftest import SAMPLE_KG
from hostile import tried

from entitynet.errors import KGError
from entitynet.kg.results import parse_results
from entitynet.printable import PrintableStream, printable
from entitynet_cli import main as cli
from entitynet_cli.common import PrintableFormatter

# what a terminal would act on: escape sequences, C1 controls (CSI 0x9b), BEL, backspace, carriage
# return, and the bidirectional overrides that show text in another order than it is stored
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31m\x9b1m\x08\r\u202e\u2066"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _graph(tmp_path, name, edit):
    path = tmp_path / name
    path.write_text(edit(SAMPLE_KG.read_text(encoding="utf-8")), encoding="utf-8")
    return path


def _ttl_escaped(text: str) -> str:
    return "".join(c if c.isprintable() and c != '"' else f"\\u{ord(c):04x}" for c in text)


LITERALS = [
    ("5000 digits", "9" * 5000, "(5000 characters)"),
    ("a sign alone", "-", "'-'"),
    ("a decimal point", "12.5", "'12.5'"),
    ("digits of another script", "\u0661\u0662", "'\u0661\u0662'"),
    ("hexadecimal", "0x1F", "'0x1F'"),
]


@pytest.mark.parametrize("name,value,shown", LITERALS, ids=[x[0] for x in LITERALS])
def test_a_literal_no_count_can_hold_is_one_line_naming_the_file_and_the_value(
    tmp_path, capsys, name, value, shown
):
    tried("knowledge graph")

    def edit(text):
        # the lion's sitelinks as a typed literal (the file writes plain integers)
        return re.sub(
            r"(data:Q140 schema:about wd:Q140 ; wikibase:sitelinks )\d+",
            lambda m: f'{m.group(1)}"{value}"^^<http://www.w3.org/2001/XMLSchema#integer>',
            text,
            count=1,
        )

    kg = _graph(tmp_path, "bad.ttl", edit)
    assert value in kg.read_text(encoding="utf-8")
    out = tmp_path / "out"
    rc = cli.main(["kg", "expand", "--kg-file", str(kg), "--out", str(out)])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip() and not x.startswith("WARNING")]
    assert rc == 2 and len(err) == 1, err
    line = err[0]
    assert line.startswith(f"entitynet: error: {kg}: the xsd:integer literal ")
    assert shown in line and "Q140" in line and "fix that value in the knowledge graph" in line, line
    assert "URL" not in line and len(line) < 400
    assert not out.exists()


def test_sparql_json_literals_are_checked_against_their_datatype():
    tried("knowledge graph", 4)

    def answer(value, dtype):
        row = {"e": {"type": "uri", "value": "http://www.wikidata.org/entity/Q1"}}
        row["n"] = {
            "type": "literal",
            "value": value,
            "datatype": f"http://www.w3.org/2001/XMLSchema#{dtype}",
        }
        return json.dumps({"head": {"vars": ["e", "n"]}, "results": {"bindings": [row]}})

    assert parse_results(answer("-42", "integer"), "x")[0]["n"].value == -42
    assert parse_results(answer("1.5e3", "double"), "x")[0]["n"].value == 1500.0
    assert parse_results(answer("INF", "double"), "x")[0]["n"].value == float("inf")
    for value, dtype in (("1" * 31, "integer"), ("1e", "double"), ("1" * 400, "decimal"), ("ten", "long")):
        with pytest.raises(
            KGError,
            match=r"^http://endpoint: the xsd:\w+ literal .* \(\?n of http://www.wikidata.org/entity/Q1\)",
        ):
            parse_results(answer(value, dtype), "http://endpoint")


def test_an_endpoint_giving_such_a_literal_is_asked_once_and_named(loopback):
    """The same literal from a SPARQL endpoint: the answer is the graph's, so it is not retried
    like a garbled answer and the line does not blame the URL or the network."""
    from loopback import LoopbackHandler

    from entitynet.kg.remote import RemoteSparql

    tried("knowledge graph")
    asked = []
    row = {
        "e": {"type": "uri", "value": "http://www.wikidata.org/entity/Q140"},
        "n": {"type": "literal", "value": "9" * 5000, "datatype": "http://www.w3.org/2001/XMLSchema#integer"},
    }

    class Endpoint(LoopbackHandler):
        def do_POST(self):
            asked.append(self.read_body())
            self.send_json(200, {"head": {"vars": ["e", "n"]}, "results": {"bindings": [row]}})

    server = loopback(Endpoint)
    client = RemoteSparql(f"{server.base}/sparql", max_retries=3, backoff=0.01)
    with pytest.raises(KGError) as e:
        client.select("SELECT ?e ?n WHERE { ?e ?p ?n }")
    assert len(asked) == 1
    message = str(e.value)
    assert "(5000 characters)" in message and "fix that value in the knowledge graph" in message
    assert "network" not in message and "attempts" not in message


@pytest.fixture(scope="module")
def hostile_graph(tmp_path_factory):
    """The sample graph with control characters in the lion's label and in a natural type's label."""
    d = tmp_path_factory.mktemp("hostile-kg")

    def edit(text):
        text = text.replace('rdfs:label "lion"@en', f'rdfs:label "lion{_ttl_escaped(HOSTILE)}"@en', 1)
        return text.replace('rdfs:label "mammal"@en', f'rdfs:label "mammal{_ttl_escaped(HOSTILE)}"@en', 1)

    kg = _graph(d, "hostile.ttl", edit)
    assert kg.read_text().count("\\u001b") == 2 * HOSTILE.count("\x1b")
    return kg, d


def test_labels_with_escape_sequences_are_printed_escaped(hostile_graph, capsys):
    tried("terminal text", 2)
    kg, d = hostile_graph
    out = d / "kg"
    assert cli.main(["kg", "expand", "--kg-file", str(kg), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert not RAW.search(printed), repr(printed)
    assert "mammal\\x1b]0;pwned\\x07\\x1b[2J" in printed  # shown, so the user sees what is there
    # the file keeps the label as it is: escaping is for the terminal only
    lion = next(json.loads(x) for x in (out / "entities.jsonl").read_text().splitlines() if '"Q140"' in x)
    assert lion["label"].startswith("lion\x1b]0;pwned\x07\x1b[2J")
    assert cli.main(["captions", "--entities", str(out / "entities.jsonl"), "--entity", "Q140"]) == 0
    printed = capsys.readouterr().out
    assert "lion\\x1b]0;pwned" in printed and not RAW.search(printed), repr(printed)


def test_error_lines_and_log_lines_are_escaped_and_stay_one_line(tmp_path, capsys):
    tried("terminal text", 3)
    out = tmp_path / "out"
    rc = cli.main(
        ["kg", "expand", "--kg-file", str(SAMPLE_KG), "--root", f"Q1{HOSTILE}\nQ2", "--out", str(out)]
    )
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("WARNING")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("entitynet: error: "), err
    assert not RAW.search(err) and "\\x1b[2J" in lines[0] and "\\n" in lines[0]
    record = logging.LogRecord("entitynet", logging.WARNING, __file__, 1, "host %s failed", (HOSTILE,), None)
    line = PrintableFormatter("%(message)s").format(record)
    assert not RAW.search(line) and line.startswith("host \\x1b]0;pwned")

    class Sink:
        def __init__(self):
            self.text = ""

        def write(self, s):
            self.text += s

    sink = Sink()
    stream = PrintableStream(sink)
    stream.write(f"a\tb\n{HOSTILE}\n")
    assert sink.text == f"a\tb\n{printable(HOSTILE)}\n" and not RAW.search(sink.text)
    assert printable("\n\t", newlines=False) == "\\x0a\\x09"
