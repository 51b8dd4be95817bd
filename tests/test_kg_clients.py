"""Both clients: the embedded store from files, the remote client against real and faulty servers."""

import gzip
import shutil
import time
import tracemalloc

import pytest
from hostile import tried

from entitynet.errors import ConfigError, KGError
from entitynet.http_policy import retry_after_seconds
from entitynet.kg import sparql
from entitynet.kg.client import KGSource
from entitynet.kg.embedded import EmbeddedSparql
from entitynet.kg.remote import RemoteSparql
from entitynet.kg.results import parse_results

LION_QUERY = sparql.sitelinks(["Q140"])


def fast_client(url, **kw) -> RemoteSparql:
    kw.setdefault("max_retries", 2)
    kw.setdefault("backoff", 0.05)
    return RemoteSparql(url, agent="EntityNet-tests/1 (test@example.org)", **kw)


# ---------------------------------------------------------------- results


def test_typed_literals_are_cast():
    payload = b"""{"head":{"vars":["a","b","c","d","e","f"]},"results":{"bindings":[{
      "a":{"type":"literal","datatype":"http://www.w3.org/2001/XMLSchema#integer","value":"42"},
      "b":{"type":"literal","datatype":"http://www.w3.org/2001/XMLSchema#double","value":"1.5"},
      "c":{"type":"literal","datatype":"http://www.w3.org/2001/XMLSchema#boolean","value":"true"},
      "d":{"type":"literal","xml:lang":"en","value":"lion"},
      "e":{"type":"uri","value":"http://www.wikidata.org/entity/Q140"},
      "f":{"type":"typed-literal","datatype":"http://www.w3.org/2001/XMLSchema#int","value":"7"}}]}}"""
    (row,) = parse_results(payload, "test")
    assert row["a"].value == 42 and row["b"].value == 1.5 and row["c"].value is True
    assert row["d"] == ("lion", "literal", "en") and row["e"].type == "uri" and row["f"].value == 7


@pytest.mark.parametrize(
    "payload",
    [
        b"<html>oops</html>",
        b'{"results": 3}',
        b'{"head": {}}',
        b"[1,2]",
        b'{"results":{"bindings":[{"x":{"type":"weird","value":"1"}}]}}',
    ],
)
def test_malformed_results_name_the_source(payload):
    with pytest.raises(KGError, match="malformed SPARQL response from http://x/sparql"):
        parse_results(payload, "http://x/sparql")


# ---------------------------------------------------------------- embedded


def test_embedded_reads_ttl_nt_and_nt_gz(sample_kg, tmp_path):
    import pyoxigraph as ox

    store = ox.Store()
    store.bulk_load(path=str(sample_kg), format=ox.RdfFormat.TURTLE)
    nt = tmp_path / "sample.nt"
    nt.write_bytes(store.dump(format=ox.RdfFormat.N_TRIPLES, from_graph=ox.DefaultGraph()))
    ntgz = tmp_path / "sample.nt.gz"
    with open(nt, "rb") as src, gzip.open(ntgz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    answers = [EmbeddedSparql([str(p)]).select(LION_QUERY) for p in (sample_kg, nt, ntgz)]
    assert (
        answers[0]
        == answers[1]
        == answers[2]
        == [{"e": answers[0][0]["e"], "sitelinks": answers[0][0]["sitelinks"]}]
    )
    assert answers[0][0]["sitelinks"].value == 230


def test_malformed_kg_file_names_file_and_line(tmp_path):
    bad = tmp_path / "broken.ttl"
    bad.write_text("@prefix wd: <http://www.wikidata.org/entity/> .\nwd:Q1 wd:P2 wd:Q3 .\nwd:Q4 wd:P5 .\n")
    with pytest.raises(KGError, match=r"malformed knowledge-graph file .*broken.ttl: .*line 3"):
        EmbeddedSparql([str(bad)])


def test_missing_or_unsupported_kg_file(tmp_path):
    with pytest.raises(KGError, match="cannot read knowledge-graph file"):
        EmbeddedSparql([str(tmp_path / "nope.ttl")])
    odd = tmp_path / "graph.xlsx"
    odd.write_text("x")
    with pytest.raises(KGError, match="unsupported knowledge-graph file"):
        EmbeddedSparql([str(odd)])


def test_source_needs_exactly_one_graph():
    with pytest.raises(ConfigError):
        KGSource()
    with pytest.raises(ConfigError):
        KGSource(endpoint="http://x", kg_files=("a.ttl",))
    with pytest.raises(ConfigError, match="unknown endpoint 'wikidta'"):
        KGSource(endpoint="wikidta").open()
    assert KGSource(endpoint="qlever").resolved_endpoint()[0].startswith("https://")


# ---------------------------------------------------------------- remote, real server


def test_remote_against_oxigraph_server_equals_embedded(oxigraph_server, sample_kg):
    remote = fast_client(oxigraph_server)
    embedded = EmbeddedSparql([str(sample_kg)])
    q = sparql.texts(["Q140", "Q146", "Q19939"], ["en", "de"])
    assert sorted(map(repr, remote.select(q))) == sorted(map(repr, embedded.select(q)))


def test_long_values_lists_go_by_post(oxigraph_server):
    ids = [f"Q{i}" for i in range(1, 3001)]  # ~20 kB of query text: too long for a GET URL on many servers
    rows = fast_client(oxigraph_server).select(sparql.sitelinks(ids))
    assert any(r["sitelinks"].value == 300 for r in rows)  # Q729 animal is in the list


# ---------------------------------------------------------------- remote, faults


def test_429_with_retry_after_is_honoured(faulty_endpoint):
    faulty_endpoint.script = ["429"]
    rows = fast_client(faulty_endpoint.url).select(LION_QUERY)
    assert rows[0]["sitelinks"].value == 230
    first, second = faulty_endpoint.requests
    assert second["time"] - first["time"] >= 0.95  # Retry-After: 1, although backoff is 0.05 s


def test_5xx_and_malformed_answers_are_retried(faulty_endpoint):
    faulty_endpoint.script = ["500", "malformed", "503"]
    rows = fast_client(faulty_endpoint.url, max_retries=3).select(LION_QUERY)
    assert rows[0]["sitelinks"].value == 230 and len(faulty_endpoint.requests) == 4


def test_request_shape_post_json_and_user_agent(faulty_endpoint):
    client = KGSource(endpoint=faulty_endpoint.url, contact="me@example.org").open()
    client.select(LION_QUERY)
    (req,) = faulty_endpoint.requests
    assert req["method"] == "POST" and "wikibase:sitelinks" in req["query"]
    assert "sparql-results+json" in req["headers"]["Accept"]
    assert (
        req["headers"]["User-Agent"].startswith("EntityNet/")
        and "me@example.org" in req["headers"]["User-Agent"]
    )


def test_persistent_errors_end_in_one_clear_error(faulty_endpoint):
    faulty_endpoint.script = ["500"] * 10
    with pytest.raises(KGError, match=r"failed after 3 attempts, last: HTTP 500 \(error 500\)"):
        fast_client(faulty_endpoint.url).select(LION_QUERY)
    assert len(faulty_endpoint.requests) == 3


def test_error_page_with_status_200_is_retried_then_reported(faulty_endpoint):
    faulty_endpoint.script = ["html200"] * 3
    with pytest.raises(KGError, match="malformed SPARQL response"):
        fast_client(faulty_endpoint.url).select(LION_QUERY)


def test_slow_endpoint_times_out_and_is_retried(faulty_endpoint):
    faulty_endpoint.script = ["slow"]
    faulty_endpoint.slow_seconds = 2.0
    t = time.monotonic()
    rows = fast_client(faulty_endpoint.url, read_timeout=0.5).select(LION_QUERY)
    assert rows and time.monotonic() - t < 2.0 and len(faulty_endpoint.requests) == 2


def test_bad_request_is_not_retried(faulty_endpoint):
    faulty_endpoint.script = ["400"]
    with pytest.raises(KGError, match="refused the query with HTTP 400: error 400"):
        fast_client(faulty_endpoint.url).select(LION_QUERY)
    assert len(faulty_endpoint.requests) == 1


def test_unreachable_endpoint():
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/sparql"  # nothing listens there
    with pytest.raises(
        KGError, match=rf"SPARQL endpoint {url} failed after 3 attempts, last: connection failed"
    ):
        fast_client(url, connect_timeout=0.5).select(LION_QUERY)


def test_rate_limit_spaces_requests(faulty_endpoint):
    client = fast_client(faulty_endpoint.url, requests_per_second=10)
    for _ in range(4):
        client.select(LION_QUERY)
    times = [r["time"] for r in faulty_endpoint.requests]
    assert times[-1] - times[0] >= 0.28


def test_retry_after_forms():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert 0 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") < 1


# ---------------------------------------------------------------- hostile endpoints: time and size


@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-headers"])
def test_a_trickling_endpoint_is_cut_off_at_the_total_deadline(hostile, path):
    tried("sparql")
    client = fast_client(hostile.base + path, read_timeout=5.0, total_timeout=1.5)  # 2 retries allowed
    t = time.monotonic()
    with pytest.raises(KGError) as e:
        client.select(LION_QUERY)
    elapsed = time.monotonic() - t
    assert elapsed < 2.5, elapsed  # the server would trickle for 25-30 s; each read comes within 5 s
    message = str(e.value)
    assert "\n" not in message and hostile.base + path in message
    assert "total timeout of 1.5 s" in message and "--total-timeout" in message


def test_an_endless_answer_stops_at_the_size_cap_without_being_held(hostile):
    tried("sparql")
    client = fast_client(hostile.base + "/endless", max_bytes=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(KGError) as e:
            client.select(LION_QUERY)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(e.value)
    assert "\n" not in message and "grew past the cap of 1 MiB" in message and "--max-response-mb" in message
    assert hostile.handler.done.wait(10)  # the server saw the client hang up
    sent = sum(hostile.handler.sent)
    assert sent < 48 << 20, sent  # of 256 MiB offered: the cap plus what socket buffers held
    assert peak < 16 << 20, peak  # never more than about the cap in memory
    # not retried: the same query would get the same answer
    with pytest.raises(KGError, match="announced 314,572,800 bytes, over the cap of 256 MiB"):
        fast_client(hostile.base + "/announced").select(LION_QUERY)


def test_limits_are_checked_and_passed_on(faulty_endpoint):
    with pytest.raises(ConfigError, match="--total-timeout must be a positive number"):
        KGSource(endpoint=faulty_endpoint.url, total_timeout=0)
    with pytest.raises(ConfigError, match="--max-response-mb must be positive"):
        KGSource(endpoint=faulty_endpoint.url, max_response_bytes=0)
    client = KGSource(endpoint=faulty_endpoint.url, total_timeout=7, max_response_bytes=64).open()
    assert (client.total_timeout, client.max_bytes) == (7, 64)
    with pytest.raises(KGError, match=r"announced \d+ bytes, over the cap of 64 bytes \(--max-response-mb\)"):
        client.select(LION_QUERY)  # the sample graph's answer is larger than that


def test_kg_expand_ends_a_trickling_endpoint_in_one_line(hostile, tmp_path, capsys):
    tried("sparql")
    from beam_pipelines import expand_kg  # noqa: F401 - imported before the clock starts
    from entitynet_cli import main as cli

    t = time.monotonic()
    rc = cli.main(
        ["kg", "expand", "--endpoint", hostile.base + "/trickle-body", "--total-timeout", "1.5"]
        + ["--read-timeout", "5", "--out", str(tmp_path / "kg")]
    )
    elapsed = time.monotonic() - t
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "total timeout of 1.5 s" in err and "--total-timeout" in err and elapsed < 3.0, elapsed
