"""The HTTP routes of `lmpipe serve` (aiohttp): TF Serving's REST API, the Vertex AI
custom-container contract, server-sent-event streaming, health and readiness.

Every error is answered as `{"error": "<one line>"}` with a 4xx (the request's fault), 503
(loading, or the batching queue is full) or 500 (the model failed on a request the server
accepted); no request can stop the server.
"""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from aiohttp import web

from pipeline.core.errors import first_line
from pipeline.serve.batching import Batcher, QueueFull
from pipeline.serve.requests import (MAX_BODY_BYTES, BadRequest, instance_of, rows_of,
                                     signature_of)
from pipeline.serving import stream

LIVE_ROUTE, READY_ROUTE = "/v1/health/live", "/v1/health/ready"
_PATH = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                   r"(?::(?P<verb>predict|generate_stream)|(?P<meta>/metadata))?")


class State:
    """What the routes serve: the current version, the state of every version seen.

    Args:
        name: the model's name in the routes.
        defaults: `generate`'s sampling defaults and `stream_chunk`.
        batcher: the dynamic batcher.
    """

    def __init__(self, name: str, defaults: dict, batcher: Batcher):
        self.name, self.defaults, self.batcher = name, defaults, batcher
        self.current = None
        self.states: dict[int, tuple[str, str]] = {}  # version -> (state, error message)
        self.streams = ThreadPoolExecutor(max_workers=16, thread_name_prefix="lmpipe-stream")

    def acquire(self, name: str, version: str | None):
        """The version a request names (the current one by default), counted as in use.

        Raises:
            BadRequest: 404 for another model or version, 503 while loading.
        """
        if name != self.name:
            raise BadRequest(f"Servable not found for request: Latest({name})", 404)
        if self.current is None:
            raise BadRequest("the model is loading", 503)
        if version is not None and version != str(self.current.version):
            raise BadRequest(f"Servable not found for request: Specific({name}, {version})", 404)
        return self.current.acquire()

    def status(self, version: str | None) -> dict:
        """TF Serving's model status JSON (one version, or all seen)."""
        found = [{"version": str(number), "state": state,
                  "status": {"error_code": "UNKNOWN" if error else "OK", "error_message": error}}
                 for number, (state, error) in sorted(self.states.items(), reverse=True)
                 if version is None or str(number) == version]
        if not found:
            raise BadRequest(f"Servable not found for request: Specific({self.name}, {version})", 404)
        return {"model_version_status": found}


def make_app(state: State, aip_health: str | None = None, aip_predict: str | None = None):
    """The aiohttp application.

    Args:
        state: what it serves.
        aip_health, aip_predict: the Vertex AI routes (`AIP_HEALTH_ROUTE`,
            `AIP_PREDICT_ROUTE`), added when given.

    Returns:
        The `web.Application`.
    """
    routes = _Routes(state)
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_errors])
    app.router.add_get(LIVE_ROUTE, routes.live)
    app.router.add_get(READY_ROUTE, routes.ready)
    app.router.add_get("/v1/models/{path:.+}", routes.get_model)
    app.router.add_post("/v1/models/{path:.+}", routes.post_model)
    if aip_health and aip_health not in (LIVE_ROUTE, READY_ROUTE):
        app.router.add_get(aip_health, routes.ready)
    if aip_predict:
        app.router.add_post(aip_predict, routes.vertex_predict)
    return app


@web.middleware
async def _errors(request, handler):
    """Every failure as a one-line JSON error, the server staying up."""
    try:
        return await handler(request)
    except BadRequest as err:
        return _error(err.status, str(err))
    except QueueFull as err:
        return _error(503, str(err))
    except web.HTTPException as err:  # no such route, wrong method, body too large
        if err.status < 400:
            raise
        return _error(err.status, err.reason if err.status != 413 else
                      f"the request body is over {MAX_BODY_BYTES} bytes")
    except Exception as err:  # noqa: BLE001  (the model failed: this request only)
        return _error(500, f"{type(err).__name__}: {first_line(err, 300)}")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": " ".join(message.split())}, status=status)


async def _json(request):
    """The request body as JSON.

    Raises:
        BadRequest: not UTF-8 JSON (or nested too deep to read).
    """
    data = await request.read()
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as err:
        raise BadRequest(f"the body is not valid JSON ({first_line(err, 120)})") from None


def _answer(results: list, columnar: bool, version: int) -> web.Response:
    """TF Serving's answer: `predictions` (rows) or `outputs` (columns), and the version."""
    if not columnar:
        body = {"predictions": results}
    elif isinstance(results[0], dict):
        body = {"outputs": {key: [row[key] for row in results] for key in results[0]}}
    else:
        body = {"outputs": results}
    body["model_version"] = str(version)
    return web.json_response(body, headers={"X-Model-Version": str(version)})


class _Routes:
    def __init__(self, state: State):
        self.state = state

    async def live(self, request):
        return web.json_response({"status": "alive"})

    async def ready(self, request):
        if self.state.current is None:
            return web.json_response({"status": "loading"}, status=503)
        return web.json_response({"status": "ready", "version": str(self.state.current.version)})

    async def get_model(self, request):
        match = _PATH.fullmatch(request.match_info["path"])
        if match is None or match["verb"]:
            raise web.HTTPNotFound()
        if not match["meta"]:
            if match["name"] != self.state.name:
                raise BadRequest(f"Servable not found for request: Latest({match['name']})", 404)
            return web.json_response(self.state.status(match["version"]))
        model = self.state.acquire(match["name"], match["version"])
        try:
            return web.json_response(_metadata(self.state.name, model))
        finally:
            model.release()

    async def post_model(self, request):
        match = _PATH.fullmatch(request.match_info["path"])
        if match is None or not match["verb"]:
            raise web.HTTPNotFound()
        body = await _json(request)
        model = self.state.acquire(match["name"], match["version"])
        try:
            if match["verb"] == "predict":
                return await self._predict(model, body)
            return await self._stream(request, model, body)
        finally:
            model.release()

    async def vertex_predict(self, request):
        """Vertex AI: `{"instances": [...]}` on the default signature (`generate` for a
        language model, `classify` for a classifier); `parameters` may give `generate`'s
        sampling settings for every instance."""
        body = await _json(request)
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        parameters = body.pop("parameters", None) or {}
        if not isinstance(parameters, dict):
            raise BadRequest("'parameters' must be an object")
        model = self.state.acquire(self.state.name, None)
        try:
            rows, _ = rows_of({**body, "signature_name": model.kind}, model.kind,
                              model.signatures[model.kind].text_input,
                              {**self.state.defaults, **_sampling_only(parameters)})
            return _answer(await self._run(model, model.kind, rows), False, model.version)
        finally:
            model.release()

    async def _predict(self, model, body) -> web.Response:
        name = signature_of(body, model)
        rows, columnar = rows_of(body, name, model.signatures[name].text_input,
                                 self.state.defaults)
        return _answer(await self._run(model, name, rows), columnar, model.version)

    async def _run(self, model, name: str, rows: list) -> list:
        """Results of rows in their order, one batcher request per sampling setting."""
        groups: dict[tuple, list[int]] = {}
        for index, (_, sampling) in enumerate(rows):
            groups.setdefault(sampling, []).append(index)
        answers = await asyncio.gather(*(
            self.state.batcher.submit(model, name, [rows[i][0] for i in indices], sampling)
            for sampling, indices in groups.items()))
        results = [None] * len(rows)
        for indices, answer in zip(groups.values(), answers):
            for index, result in zip(indices, answer):
                results[index] = result
        return results

    async def _stream(self, request, model, body) -> web.StreamResponse:
        return await stream_events(request, self.state, model, body)


def _sampling_only(parameters: dict) -> dict:
    from pipeline.serve.model import SAMPLING

    unknown = set(parameters) - set(SAMPLING)
    if unknown:
        raise BadRequest(f"unknown parameter '{sorted(unknown)[0]}' (takes {', '.join(SAMPLING)})")
    return parameters


def _metadata(name: str, model) -> dict:
    """TF Serving's metadata JSON: the served signatures' inputs and outputs."""
    from pipeline.serve.model import Signature

    signatures = {key: Signature(key, "", function).metadata()
                  for key, function in sorted(model.all_signatures.items())}
    return {"model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
            "metadata": {"signature_def": {"signature_def": signatures},
                         "served_signatures": sorted(model.signatures)}}


async def stream_events(request, state: State, model, body) -> web.StreamResponse:
    """`:generate_stream`: one prompt's completion as server-sent events.

    The body is one `generate` instance plus `stream_chunk` (new tokens per event, as
    `lmpipe generate --stream-chunk`); each event is `data: {"text": piece}`, the last
    `event: end` with the version. The pieces come from `pipeline.serving.stream`, whose
    model calls go through the batcher.
    """
    if "generate" not in model.signatures:
        raise BadRequest("signature 'generate' is not served by this model")
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    body = dict(body)
    chunk = body.pop("stream_chunk", state.defaults["stream_chunk"])
    if not isinstance(chunk, int) or isinstance(chunk, bool) or not 0 <= chunk <= 2**31 - 1:
        raise BadRequest(f"'stream_chunk' must be an integer >= 0, got {chunk!r}"[:200])
    prompt, sampling = instance_of(body, "generate", "prompt", state.defaults)
    loop = asyncio.get_running_loop()
    pieces = stream(_BatchedGenerate(state.batcher, model, loop), prompt, max_tokens=sampling[0],
                    chunk=chunk, temperature=sampling[1], top_k=sampling[2], top_p=sampling[3],
                    seed=sampling[4])
    first = await loop.run_in_executor(state.streams, next, pieces, None)  # a full queue: 503
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Model-Version": str(model.version)})
    await response.prepare(request)
    piece = first
    try:
        while piece is not None:
            await response.write(_event({"text": piece}))
            piece = await loop.run_in_executor(state.streams, next, pieces, None)
        await response.write(_event({"model_version": str(model.version)}, "end"))
    except (QueueFull, Exception) as err:  # noqa: BLE001  (headers are sent: say it in the stream)
        if isinstance(err, (ConnectionResetError, asyncio.CancelledError)):
            raise
        await response.write(_event({"error": first_line(err, 300)}, "error"))
    await response.write_eof()
    return response


def _event(data: dict, name: str | None = None) -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode("utf-8")


class _BatchedGenerate:
    """The `generate` signature as `pipeline.serving.stream` calls it (from a stream's
    thread), each call going through the event loop's batcher."""

    def __init__(self, batcher: Batcher, model, loop):
        self.batcher, self.model, self.loop = batcher, model, loop

    def __call__(self, prompt, max_new_tokens, temperature, top_k, top_p, seed):
        sampling = (int(max_new_tokens.numpy()), float(temperature.numpy()), int(top_k.numpy()),
                    float(top_p.numpy()), int(seed.numpy()))
        texts = [text.decode("utf-8") for text in prompt.numpy()]
        rows = asyncio.run_coroutine_threadsafe(
            self.batcher.submit(self.model, "generate", texts, sampling), self.loop).result()
        rows = [row if isinstance(row, dict) else {"completion": row} for row in rows]
        return {key: _Array([row[key].encode("utf-8") if isinstance(row[key], str) else row[key]
                             for row in rows]) for key in rows[0]}


class _Array:
    """A tensor's `.numpy()`, for `pipeline.serving._call`."""

    def __init__(self, values: list):
        self.values = np.array(values, dtype=object if isinstance(values[0], bytes) else None)

    def numpy(self):
        return self.values
