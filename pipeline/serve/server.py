"""The server's life: listen, load and warm the first version, say it is ready, watch the
serving directory for new versions, and stop gracefully."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from aiohttp import web

from pipeline.core.errors import UsageError, first_line
from pipeline.serve.app import State, make_app
from pipeline.serve.batching import Batcher
from pipeline.serve.model import load

# How long a stop waits for the requests in flight (a generation takes seconds).
SHUTDOWN_SECONDS = 60.0


def log(message: str) -> None:
    """A progress or error line on stderr."""
    print(f"lmpipe serve: {message}", file=sys.stderr, flush=True)


def _stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set `stop` (the server then shuts down gracefully)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)


async def run(args, defaults: dict, source: tuple) -> int:
    """Serve until SIGTERM/SIGINT.

    Args:
        args: the parsed command line (see `serve_cli`).
        defaults: `generate`'s sampling defaults and `stream_chunk`.
        source: (SavedModel directory, version, serving directory or None).

    Returns:
        0 once stopped.

    Raises:
        UsageError: the port cannot be bound, or the first version cannot be served.
    """
    path, version, watched = source
    state = State(args.name, defaults, Batcher(args.max_batch_size, args.batch_timeout_ms / 1000,
                                               args.max_queue))
    app = make_app(state, os.environ.get("AIP_HEALTH_ROUTE"), os.environ.get("AIP_PREDICT_ROUTE"))
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    stop = asyncio.Event()
    _stop_on_signals(stop)
    try:
        port = await _listen(runner, args.host, args.port)
        state.states[version] = ("LOADING", "")
        loading = asyncio.ensure_future(_load(path, version, defaults))
        await asyncio.wait([loading, asyncio.ensure_future(stop.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            state.current = await loading
            state.states[version] = ("AVAILABLE", "")
            print(f"lmpipe serve: {args.name} version {version} ready on "
                  f"http://{args.host}:{port}", flush=True)
            watcher = asyncio.ensure_future(_watch(state, watched, args.poll_seconds)
                                            if watched else stop.wait())
            await stop.wait()
            watcher.cancel()
        log("stopping: finishing the requests in flight")
    finally:
        await runner.cleanup()  # stops accepting, waits for the handlers in flight
        await state.batcher.close()
        state.streams.shutdown(wait=False)
    return 0


async def _listen(runner: web.AppRunner, host: str, port: int) -> int:
    """Bind and listen; the port bound (`--port 0` picks a free one).

    Raises:
        UsageError: the address cannot be bound.
    """
    site = web.TCPSite(runner, host, port, shutdown_timeout=SHUTDOWN_SECONDS)
    try:
        await site.start()
    except OSError as err:
        raise UsageError(f"--host {host} --port {port}: cannot listen "
                         f"({err.strerror or first_line(err)})") from None
    return runner.addresses[0][1]


async def _load(path: str, version: int, defaults: dict):
    """Load and warm a version in a thread.

    Raises:
        UsageError: it cannot be loaded or its warm-up call fails.
    """
    def load_and_warm():
        model = load(path, version)
        try:
            model.warm(defaults)
        except Exception as err:  # noqa: BLE001  (a model that cannot answer is not served)
            raise UsageError(f"--model {path}: warm-up call failed ({first_line(err)})") from None
        return model

    return await asyncio.get_running_loop().run_in_executor(None, load_and_warm)


async def _watch(state: State, watched: str, poll: float) -> None:
    """Poll the serving directory; switch to each newer complete version that loads."""
    from pipeline.core.contracts import serving_dir

    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(poll)
        try:
            newest = await loop.run_in_executor(None, serving_dir.latest, watched)
        except UsageError as err:  # the directory went away or became unreadable
            log(f"cannot watch {watched}: {err}")
            continue
        if newest is None or newest.number <= state.current.version or newest.number in state.states:
            continue
        await switch_to(state, newest.path, newest.number)


async def switch_to(state: State, path: str, version: int) -> bool:
    """Load and warm `version`, make it current, and unload the old one once idle.

    Returns:
        Whether it was switched to (a failure is logged and kept in the status).
    """
    old = state.current
    state.states[version] = ("LOADING", "")
    log(f"loading version {version} from {path}")
    try:
        new = await _load(path, version, state.defaults)
    except Exception as err:  # noqa: BLE001  (whatever fails, the old version keeps serving)
        message = first_line(err, 300)
        state.states[version] = ("END", message)
        log(f"version {version} failed to load; still serving version {old.version}: {message}")
        return False
    state.current = new
    state.states[version] = ("AVAILABLE", "")
    state.states[old.version] = ("UNLOADING", "")
    log(f"version {version} ready; unloading version {old.version} once its requests finish")
    await asyncio.get_running_loop().run_in_executor(None, old.wait_idle)
    old.unload()
    del state.states[old.version]
    log(f"version {old.version} unloaded")
    return True
