"""A push in the middle of a load on a running `lmpipe serve`: no request fails, each
answer names the version that made it (and is that version's completion), and the server
ends on the new version."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests import lm_fixtures as lm
from tests.serve.helpers import ServeProcess, bigram, publish


async def _client(session, url, stop, answers):
    while not stop.is_set():
        async with session.post(url + "/v1/models/lmpipe:predict", json={
                "instances": [{"prompt": "hello", "max_new_tokens": 8, "temperature": 0}]}) as response:
            body = await response.json()
            answers.append((response.status, response.headers.get("X-Model-Version"), body))


async def _load_during_push(url, push, clients=8):
    """Clients ask for completions before, during and after `push()`."""
    stop, answers = asyncio.Event(), []
    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.ensure_future(_client(session, url, stop, answers)) for _ in range(clients)]
        await asyncio.sleep(0.5)
        await asyncio.get_running_loop().run_in_executor(None, push)
        deadline = time.monotonic() + 60
        while not any(version == "2" for _, version, _ in answers[-clients:]) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
    return answers


def test_a_push_during_the_load_fails_no_request_and_each_answer_names_its_version(tmp_path):
    model_1, table_1 = bigram(tmp_path, seed=1)
    model_2, table_2 = bigram(tmp_path, seed=5)
    publish(model_1, tmp_path / "serving", 1)
    server = ServeProcess("--model", tmp_path / "serving", "--port", "0", "--poll-seconds", "0.2")
    try:
        answers = asyncio.run(_load_during_push(server.url, lambda: publish(model_2, tmp_path / "serving", 2)))
    finally:
        status, err = server.stop()
    expected = {"1": lm.greedy_completion(table_1, "hello", 8), "2": lm.greedy_completion(table_2, "hello", 8)}
    assert [code for code, _, _ in answers if code != 200] == []
    assert all(body == {"predictions": [expected[version]], "model_version": version}
               for _, version, body in answers)
    versions = [version for _, version, _ in answers]
    assert versions[0] == "1" and versions[-1] == "2"
    assert versions.index("2") > 0 and "1" not in versions[versions.index("2") + 8:]
    assert status == 0
    assert "version 2 ready; unloading version 1 once its requests finish" in err
    assert "version 1 unloaded" in err
