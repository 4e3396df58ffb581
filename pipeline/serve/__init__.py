"""`lmpipe serve`: an HTTP model server for an exported or pushed model.

Built on aiohttp (asyncio): dynamic batching with a bounded wait and server-sent events are
coroutines beside the routes, and the model runs in a thread, so health checks answer
during a call. `routes` are in `app.py`, the batching in `batching.py`, a loaded version in
`model.py`, the reading of requests in `requests.py`.

`--model` is a SavedModel, a model artifact or a serving directory (as for `lmpipe
generate`). A serving directory is served at its newest complete version and watched:
a newer version is loaded and warmed beside the one in service, then takes the new
requests; the old one is unloaded once the requests that started on it have finished. A
version that does not load is reported (stderr, the status route) and the old one stays.

Once the first version is warmed, one line goes to stdout:
`lmpipe serve: NAME version V ready on http://HOST:PORT`. SIGTERM or SIGINT: stop
accepting, let the requests in flight finish, exit 0.
"""

from __future__ import annotations

import asyncio
import os

from pipeline.core.errors import UsageError

def source_of(path: str) -> tuple[str, int, str | None]:
    """What `--model PATH` serves.

    Returns:
        (the SavedModel directory, its version number, the serving directory to watch or
        None). A version directory keeps its number; another SavedModel is version 0.

    Raises:
        UsageError: nothing loadable there.
    """
    from pipeline.core.contracts.model import find_saved_model
    from pipeline.serving import resolve_model_dir

    saved_model = resolve_model_dir(path)
    if find_saved_model(path) is None:  # a serving directory
        return saved_model, int(os.path.basename(saved_model)), path
    name = os.path.basename(os.path.normpath(saved_model))
    return saved_model, int(name) if name.isascii() and name.isdigit() else 0, None


def serve_cli(args, defaults: dict) -> int:
    """`lmpipe serve`.

    Args:
        args: the parsed command line (model, host, port, name, max_batch_size,
            batch_timeout_ms, max_queue, poll_seconds).
        defaults: `lmpipe generate`'s sampling defaults (`max_new_tokens`, `temperature`,
            `top_k`, `top_p`, `seed`, `stream_chunk`).

    Returns:
        The exit status (0 after SIGTERM/SIGINT).

    Raises:
        UsageError: bad flags, or the model cannot be served.
    """
    for flag, value, least in (("--max-batch-size", args.max_batch_size, 1),
                               ("--max-queue", args.max_queue, 1),
                               ("--batch-timeout-ms", args.batch_timeout_ms, 0),
                               ("--port", args.port, 0)):
        if not value >= least:
            raise UsageError(f"{flag} must be >= {least}, got {value}")
    if args.port > 65535:
        raise UsageError(f"--port must be at most 65535, got {args.port}")
    if not 0 < args.poll_seconds < float("inf"):
        raise UsageError(f"--poll-seconds must be > 0, got {args.poll_seconds}")
    source = source_of(args.model)
    from pipeline.serve.server import run

    return asyncio.run(run(args, defaults, source))
