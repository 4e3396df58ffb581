"""The server in process (its aiohttp app on loopback, a real HTTP client, real bigram
SavedModels): dynamic batching, the bounded queue, switching versions."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from pipeline.cli import GENERATE_DEFAULTS
from pipeline.serve.app import State, make_app
from pipeline.serve.batching import Batcher
from pipeline.serve.model import load
from pipeline.serve.server import switch_to
from tests import lm_fixtures as lm
from tests.serve.helpers import bigram, publish

GREEDY = {"max_new_tokens": 6, "temperature": 0}


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Versions 1 and 2 (different tables) and a version 3 that does not load."""
    root = tmp_path_factory.mktemp("versions")
    tables = {}
    for number, seed in ((1, 1), (2, 5)):
        model, tables[number] = bigram(root, seed)
        publish(model, root / "serving", number)
    broken = root / "serving" / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a graph")
    assert lm.greedy_completion(tables[1], "hello", 6) != lm.greedy_completion(tables[2], "hello", 6)
    return {"dir": root / "serving", "tables": tables, "v1": load(str(root / "serving" / "1"), 1)}


def _serve(model, test, *, max_batch=16, timeout=0.3, max_queue=64):
    """Run `test(state, url)` against the app serving `model` on loopback."""
    async def go():
        state = State("lmpipe", GENERATE_DEFAULTS, Batcher(max_batch, timeout, max_queue))
        state.current, state.states[model.version] = model, ("AVAILABLE", "")
        server = TestServer(make_app(state), host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                return await test(state, str(server.make_url("")), session)
        finally:
            await server.close()
            await state.batcher.close()
    return asyncio.run(go())


async def _predict(session, url, instances, version=None):
    path = f"/v1/models/lmpipe/versions/{version}:predict" if version else "/v1/models/lmpipe:predict"
    async with session.post(url + path, json={"instances": instances}) as response:
        return response.status, await response.json()


def test_concurrent_requests_with_the_same_settings_share_one_model_call(versions):
    prompts = [f"p{i}q" for i in range(16)]

    async def test(state, url, session):
        answers = await asyncio.gather(*(_predict(session, url, [{"prompt": p, **GREEDY}])
                                         for p in prompts))
        return state.batcher.calls, answers

    calls, answers = _serve(versions["v1"], test)
    assert calls == 1
    assert [body["predictions"][0] for _, body in answers] == [
        lm.greedy_completion(versions["tables"][1], p, 6) for p in prompts]


def test_requests_with_other_sampling_settings_get_their_own_call(versions):
    async def test(state, url, session):
        await asyncio.gather(*(_predict(session, url, [{"prompt": "ab", **GREEDY, "seed": i % 3}])
                               for i in range(9)))
        return state.batcher.calls

    assert _serve(versions["v1"], test) == 3


def test_a_batch_holds_at_most_max_batch_size_rows(versions):
    async def test(state, url, session):
        status, body = await _predict(session, url, [{"prompt": f"x{i}", **GREEDY} for i in range(10)])
        return state.batcher.calls, status, len(body["predictions"])

    # One request of 10 rows is one call however big; two concurrent ones are two calls.
    assert _serve(versions["v1"], test, max_batch=4) == (1, 200, 10)


def test_a_full_queue_answers_503_at_once(versions):
    async def test(state, url, session):
        waiting = [asyncio.ensure_future(_predict(session, url, [{"prompt": "a", **GREEDY}]))
                   for _ in range(2)]
        while state.batcher.queued < 2:
            await asyncio.sleep(0.01)
        start = time.monotonic()
        refused = await _predict(session, url, [{"prompt": "a", **GREEDY}])
        return refused, time.monotonic() - start, [status for status, _ in await asyncio.gather(*waiting)]

    refused, seconds, statuses = _serve(versions["v1"], test, timeout=1.0, max_queue=2)
    assert refused == (503, {"error": "the queue is full (2 rows waiting)"})
    assert seconds < 0.5  # at once, not after the batch's wait
    assert statuses == [200, 200]


def test_a_new_version_takes_new_requests_and_the_old_one_finishes_its_own(versions):
    tables = versions["tables"]

    async def test(state, url, session):
        in_flight = state.acquire("lmpipe", None)  # what a request does on arrival
        switching = asyncio.ensure_future(switch_to(state, str(versions["dir"] / "2"), 2))
        while state.current.version != 2:
            await asyncio.sleep(0.05)
        seen = {"states": dict(state.states), "new": await _predict(session, url, [{"prompt": "hello", **GREEDY}]),
                "old by number": (await _predict(session, url, ["a"], version=1))[0],
                "in flight": await state.batcher.submit(in_flight, "generate", ["hello"], (6, 0.0, 0, 1.0, 0)),
                "old still loaded": bool(in_flight.signatures), "switched early": switching.done()}
        in_flight.release()
        seen["switched"] = await switching
        seen["old unloaded"] = not in_flight.signatures and 1 not in state.states
        return seen

    seen = _serve(load(str(versions["dir"] / "1"), 1), test)
    assert seen["states"] == {1: ("UNLOADING", ""), 2: ("AVAILABLE", "")}
    assert seen["new"] == (200, {"predictions": [lm.greedy_completion(tables[2], "hello", 6)],
                                 "model_version": "2"})
    assert seen["old by number"] == 404
    assert seen["in flight"] == [lm.greedy_completion(tables[1], "hello", 6)]
    assert seen["old still loaded"] and not seen["switched early"]
    assert seen["switched"] and seen["old unloaded"]


def test_a_version_that_does_not_load_is_reported_and_the_old_one_keeps_serving(versions):
    async def test(state, url, session):
        switched = await switch_to(state, str(versions["dir"] / "3"), 3)
        async with session.get(url + "/v1/models/lmpipe") as response:
            status = await response.json()
        return switched, status, await _predict(session, url, [{"prompt": "hello", **GREEDY}])

    switched, status, answer = _serve(versions["v1"], test)
    assert not switched
    failed, serving = status["model_version_status"]
    assert (failed["version"], failed["state"], failed["status"]["error_code"]) == ("3", "END", "UNKNOWN")
    assert "cannot load SavedModel" in failed["status"]["error_message"]
    assert (serving["version"], serving["state"]) == ("1", "AVAILABLE")
    assert answer == (200, {"predictions": [lm.greedy_completion(versions["tables"][1], "hello", 6)],
                            "model_version": "1"})
