"""`lmpipe serve` as a user runs it: a fresh process on a pushed model, a real HTTP client
on loopback (the README's curl example), bad requests that must not take it down, SIGTERM."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.conftest import run_lmpipe
from tests.serve.helpers import ServeProcess, bigram, publish
from tests import lm_fixtures as lm


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`lmpipe serve --model SERVING --port 0` on a serving directory holding version 1."""
    root = tmp_path_factory.mktemp("serve")
    model, table = bigram(root, seed=1)
    publish(model, root / "serving", 1)
    process = ServeProcess("--model", root / "serving", "--port", "0")
    yield {"process": process, "url": process.url, "table": table}
    process.stop()


def _post(url: str, body, raw: bool = False):
    """POST a body (JSON, or raw bytes) and return (status, parsed JSON, headers)."""
    async def go():
        async with aiohttp.ClientSession() as session:
            data = body if raw else json.dumps(body).encode()
            async with session.post(url, data=data) as response:
                return response.status, json.loads(await response.read()), response.headers
    return asyncio.run(go())


def _get(url: str):
    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                return response.status, json.loads(await response.read())
    return asyncio.run(go())


def test_the_ready_line_names_the_model_version_and_address(server):
    assert server["process"].ready.startswith("lmpipe serve: lmpipe version 1 ready on http://127.0.0.1:")
    assert _get(server["url"] + "/v1/models/lmpipe") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    assert _get(server["url"] + "/v1/health/ready") == (200, {"status": "ready", "version": "1"})


def test_a_completion_as_the_readme_curls_it(server):
    status, body, headers = _post(server["url"] + "/v1/models/lmpipe:predict", {
        "instances": [{"prompt": "hello", "max_new_tokens": 12, "temperature": 0}]})
    assert status == 200
    assert body == {"predictions": [lm.greedy_completion(server["table"], "hello", 12)],
                    "model_version": "1"}
    assert headers["X-Model-Version"] == "1"


def test_left_out_sampling_arguments_take_lmpipe_generates_defaults(server):
    explicit = {"prompt": "abc", "max_new_tokens": 64, "temperature": 1.0, "top_k": 0,
                "top_p": 1.0, "seed": 0}
    _, given, _ = _post(server["url"] + "/v1/models/lmpipe:predict", {"instances": [explicit]})
    _, left_out, _ = _post(server["url"] + "/v1/models/lmpipe:predict",
                           {"instances": [{"prompt": "abc"}]})
    assert len(given["predictions"][0]) == 64  # 64 letters: the default max_new_tokens
    assert left_out == given


def test_columnar_inputs_and_score(server):
    status, body, _ = _post(server["url"] + "/v1/models/lmpipe:predict", {
        "inputs": {"prompt": ["ab", "hi"], "max_new_tokens": 5, "temperature": 0}})
    assert status == 200
    assert body["outputs"] == [lm.greedy_completion(server["table"], p, 5) for p in ("ab", "hi")]
    status, body, _ = _post(server["url"] + "/v1/models/lmpipe:predict", {
        "signature_name": "score", "instances": ["hijk", {"text": "hi"}]})
    assert status == 200
    assert [row["num_tokens"] for row in body["predictions"]] == [3, 1]
    expected = -sum(server["table"][ord(a) % lm.VOCAB, ord(b) % lm.VOCAB] for a, b in ("hi", "ij", "jk"))
    assert body["predictions"][0]["nll"] == pytest.approx(expected, rel=1e-5)


def test_streaming_sends_the_completion_in_chunks_then_an_end_event(server):
    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.post(server["url"] + "/v1/models/lmpipe:generate_stream", json={
                    "prompt": "hello", "max_new_tokens": 20, "temperature": 0,
                    "stream_chunk": 8}) as response:
                assert response.headers["Content-Type"] == "text/event-stream"
                return (await response.read()).decode()
    events = [event for event in asyncio.run(go()).split("\n\n") if event]
    pieces = [json.loads(event[len("data: "):])["text"] for event in events[:-1]]
    assert [len(piece) for piece in pieces] == [8, 8, 4]
    assert "".join(pieces) == lm.greedy_completion(server["table"], "hello", 20)
    assert events[-1] == 'event: end\ndata: {"model_version": "1"}'


BAD = [
    (b"{", 400, "the body is not valid JSON"),
    (b"[" * 100000, 400, "the body is not valid JSON"),
    (b"[]", 400, "the request body must be a JSON object"),
    (b'{"instances": []}', 400, "'instances' must be a non-empty list"),
    (b'{"instances": [{}]}', 400, "missing input 'prompt'"),
    (b'{"instances": [{"prompt": 5}]}', 400, "'prompt' must be a string, got int"),
    (b'{"instances": [{"prompt": ""}]}', 400, "'prompt' is empty"),
    (json.dumps({"instances": [{"prompt": "x" * 2**20}]}).encode(), 413,
     "the request body is over 1048576 bytes"),
    (json.dumps({"instances": [{"prompt": "x" * 100000}]}).encode(), 400,
     "'prompt' is 100000 bytes; at most 65536"),
    (b'{"instances": [{"prompt": "a", "max_new_tokens": -1}]}', 400, "max_new_tokens must be >= 1"),
    (b'{"instances": [{"prompt": "a", "max_new_tokens": 100000}]}', 400,
     "'max_new_tokens' must be at most 1024"),
    (b'{"instances": [{"prompt": "a", "max_new_tokens": 1e999}]}', 400,
     "'max_new_tokens' must be an integer"),
    (b'{"instances": [{"prompt": "a", "temperature": NaN}]}', 400, "'temperature' must be >= 0"),
    (b'{"instances": [{"prompt": "a", "temperature": "hot"}]}', 400, "'temperature' must be a number"),
    (b'{"instances": [{"prompt": "a", "seed": 4294967296}]}', 400, "seed must fit in 32 bits"),
    (b'{"instances": [{"prompt": "a", "top_p": 0}]}', 400, "top_p must be in (0, 1]"),
    (b'{"instances": [{"prompt": "a", "bogus": 1}]}', 400, "unknown input 'bogus'"),
    (b'{"signature_name": "nope", "instances": ["a"]}', 400, "signature 'nope' is not served"),
    (b'{"signature_name": "score_examples", "instances": ["a"]}', 400,
     "signature 'score_examples' is not served"),
]


def test_every_bad_request_gets_a_one_line_4xx_and_the_server_stays_up(server):
    url = server["url"] + "/v1/models/lmpipe:predict"
    for data, status, message in BAD:
        got, body, _ = _post(url, data, raw=True)
        assert (got, body["error"][:len(message)]) == (status, message), data[:60]
        assert list(body) == ["error"] and "\n" not in body["error"]
    assert _post(server["url"] + "/v1/models/other:predict", {"instances": ["a"]})[:2] == (
        404, {"error": "Servable not found for request: Latest(other)"})
    assert _post(server["url"] + "/v1/models/lmpipe/versions/9:predict", {"instances": ["a"]})[:2] == (
        404, {"error": "Servable not found for request: Specific(lmpipe, 9)"})
    assert _get(server["url"] + "/v1/models/lmpipe/versions/9")[0] == 404
    assert _post(server["url"] + "/v1/models/lmpipe/versions/1:predict",
                 {"instances": [{"prompt": "a", "max_new_tokens": 3}]})[0] == 200
    assert server["process"].process.poll() is None


def test_a_model_that_cannot_be_loaded_exits_2_with_one_line(tmp_path):
    broken = tmp_path / "serving" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a graph")
    result = run_lmpipe("serve", "--model", tmp_path / "serving", "--port", "0", timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("lmpipe")]
    assert len(lines) == 1
    assert lines[0].startswith(f"lmpipe: error: --model {broken}: cannot load SavedModel (")


def test_sigterm_finishes_and_exits_0(server):
    status, err = server["process"].stop()
    assert status == 0, err
    assert "lmpipe serve: stopping: finishing the requests in flight" in err


def test_the_vertex_ai_container_contract(server, tmp_path):
    """AIP_HTTP_PORT is the port, AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE are served, and
    `{"instances": [...]}` gets `{"predictions": [...]}` from `generate`."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = tmp_path / "model"
    lm.write_bigram_model(model, seed=1, sequence_length=16)
    process = ServeProcess("--model", model, "--name", "chat", env={
        "AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": "/health",
        "AIP_PREDICT_ROUTE": "/predict/chat"})
    try:
        assert process.ready == f"lmpipe serve: chat version 0 ready on http://127.0.0.1:{port}"
        assert _get(process.url + "/health") == (200, {"status": "ready", "version": "0"})
        status, body, _ = _post(process.url + "/predict/chat", {
            "instances": [{"prompt": "hello"}, {"prompt": "ab"}],
            "parameters": {"max_new_tokens": 5, "temperature": 0}})
        assert (status, body) == (200, {"predictions": [
            lm.greedy_completion(server["table"], p, 5) for p in ("hello", "ab")], "model_version": "0"})
        assert _post(process.url + "/predict/chat", {"instances": [{"prompt": "a"}],
                                                     "parameters": {"top_q": 1}})[:2] == (
            400, {"error": "unknown parameter 'top_q' (takes max_new_tokens, temperature, top_k, top_p, seed)"})
    finally:
        assert process.stop()[0] == 0
