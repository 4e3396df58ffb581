"""Infra validation (TFX's InfraValidator): the candidate is served before it is pushed.

`validate` starts `lmpipe serve` on the candidate SavedModel in a fresh process (a process,
not an import: a stage does not import the orchestration), waits for its one ready line on
stdout, and sends one canary request per signature a client calls, in TF Serving's REST
form (`POST /v1/models/NAME:predict`, two instances). Each answer is checked against the
signature as the SavedModel declares it (`saved_model.pb`): one prediction per instance,
every output there with the declared rank and type, strings as strings, every number
finite. The serving process is stopped whatever happens (SIGTERM, then SIGKILL), and the
whole check is bounded by one deadline.

The signatures that get a canary are those a client calls, as `lmpipe serve` chooses
them: `generate` (its sampling arguments other than a short `max_new_tokens` left to the
server's defaults) and every other signature that takes one string tensor of texts
(`score`, `classify`). Signatures over serialized examples (`score_examples`,
`classify_examples`, `generate_examples`) are evaluate's, which already ran them on the
eval set; they are listed as skipped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from pipeline.core.errors import first_line

# How the serving process is started: `sys.executable` runs these, then the arguments.
SERVE_ARGS = ("-m", "pipeline.cli", "serve")
MODEL_NAME = "candidate"
READY = re.compile(r"lmpipe serve: (?P<name>\S+) version (?P<version>\d+) ready on "
                   r"(?P<url>http://\S+)")
# Two instances, so that an answer that mixes up the batch dimension is caught.
CANARY_TEXTS = ("The quick brown fox jumps over the lazy dog.", "Once upon a time")
CANARY_NEW_TOKENS = 4
# How long a SIGTERM'd server gets to stop before it is killed.
STOP_SECONDS = 10.0
# The signature a canary asks with prompts, and the suffix of those over serialized examples.
GENERATE, EXAMPLES_SUFFIX = "generate", "_examples"
# TensorFlow dtypes (types_pb2 numbers) by the JSON value TF Serving gives for them.
_STRING, _BOOL = {7}, {10}
_FLOATS = {1, 2, 14, 19}            # float, double, bfloat16, half
_INTS = {3, 4, 5, 6, 9, 17, 22, 23}  # int32, uint8, int16, int8, int64, uint16, uint32, uint64


class NotServable(Exception):
    """The candidate is not served, or answers a canary wrong; the message says how."""


@dataclass(frozen=True)
class Signature:
    """What a canary needs of one signature.

    Attributes:
        name: the signature's name.
        inputs: input name -> dtype enum.
        outputs: output name -> (dtype enum, rank per instance, None if unknown).
    """

    name: str
    inputs: dict
    outputs: dict

    def instances(self) -> list[dict] | None:
        """The canary's instances, or None when a client does not call it with text."""
        if self.name == GENERATE:
            return [{"prompt": text, "max_new_tokens": CANARY_NEW_TOKENS}
                    for text in CANARY_TEXTS]
        if (len(self.inputs) == 1 and set(self.inputs.values()) <= _STRING
                and not self.name.endswith(EXAMPLES_SUFFIX)):
            return [{next(iter(self.inputs)): text} for text in CANARY_TEXTS]
        return None


def validate(saved_model: str, timeout: float) -> dict:
    """Serve `saved_model` in a fresh `lmpipe serve` process and canary its signatures.

    Args:
        saved_model: the candidate SavedModel directory.
        timeout: seconds the whole check may take; then the process is stopped.

    Returns:
        {"passed": bool, "problem": why not (None if passed), "checked": the signatures
        that answered, "skipped": those over serialized examples, "seconds": time taken}.
    """
    start = time.monotonic()
    result = {"passed": False, "problem": None, "checked": [], "skipped": []}
    try:
        signatures = read_signatures(saved_model)
        callable_ = [s for s in signatures if s.instances() is not None]
        result["skipped"] = sorted(s.name for s in signatures if s.instances() is None)
        if not callable_:
            raise NotServable("exports no signature a client calls with text "
                              f"(it has {sorted(s.name for s in signatures) or 'none'})")
        with serving(saved_model, start + timeout) as url:
            for signature in callable_:
                canary(url, signature, start + timeout)
                result["checked"].append(signature.name)
        result["passed"] = True
    except NotServable as err:
        result["problem"] = str(err)
    result["seconds"] = round(time.monotonic() - start, 2)
    return result


def read_signatures(saved_model: str) -> list[Signature]:
    """The serving signatures that `saved_model.pb` declares (no graph is loaded).

    Raises:
        NotServable: `saved_model.pb` does not read.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    try:
        with open(os.path.join(saved_model, "saved_model.pb"), "rb") as f:
            graphs = saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs
    except (OSError, DecodeError) as err:
        raise NotServable(f"saved_model.pb does not read ({first_line(err)})") from None
    serve = [g for g in graphs if "serve" in g.meta_info_def.tags]
    if not serve:
        return []
    found = []
    for name, definition in sorted(serve[0].signature_def.items()):
        if name.startswith("__"):  # `__saved_model_init_op`: not a signature to call
            continue
        outputs = {key: (tensor.dtype, None if tensor.tensor_shape.unknown_rank
                         else max(len(tensor.tensor_shape.dim) - 1, 0))
                   for key, tensor in definition.outputs.items()}
        inputs = {key: tensor.dtype for key, tensor in definition.inputs.items()}
        found.append(Signature(name, inputs, outputs))
    return found


@contextlib.contextmanager
def serving(saved_model: str, deadline: float):
    """A `lmpipe serve` process on `saved_model`, stopped on leaving.

    Yields:
        Its base URL, once it printed its ready line.

    Raises:
        NotServable: it exited, or was not ready by `deadline`.
    """
    command = [sys.executable, *SERVE_ARGS, "--model", saved_model, "--host", "127.0.0.1",
               "--port", "0", "--name", MODEL_NAME]
    with tempfile.TemporaryFile() as errors:
        # Its own process group, so that stopping it also stops anything it started.
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            yield _ready_url(process, errors, deadline)
        finally:
            stop(process)


def _ready_url(process: subprocess.Popen, errors, deadline: float) -> str:
    """The URL of the ready line `process` prints on stdout before `deadline`."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        with process.stdout:  # ends when the process (and its group) is gone
            for line in process.stdout:
                lines.put(line.decode("utf-8", "replace"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            raise NotServable("the server was not ready within push.infra_validation_timeout; "
                              "it was stopped") from None
        if line is None:
            status = process.wait()
            raise NotServable(f"the server exited with status {status} before it was ready: "
                              f"{_last_line(errors) or 'no message'}")
        ready = READY.fullmatch(line.strip())
        if ready:
            return ready["url"].rstrip("/")


def _last_line(errors) -> str:
    """The last non-empty line the server wrote on stderr (its one-line error)."""
    errors.seek(0)
    lines = [line.strip() for line in errors.read().decode("utf-8", "replace").splitlines()]
    return next((line for line in reversed(lines) if line), "")[:500]


def stop(process: subprocess.Popen) -> None:
    """Stop the serving process and its group: SIGTERM, then SIGKILL after `STOP_SECONDS`.
    The group is signalled while its leader is not yet reaped, so its id is not reused."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def canary(url: str, signature: Signature, deadline: float) -> None:
    """Send `signature` its canary and check the answer.

    Raises:
        NotServable: no answer by `deadline`, not 200, or not what the signature declares.
    """
    instances = signature.instances()
    body = json.dumps({"signature_name": signature.name, "instances": instances}).encode()
    request = urllib.request.Request(f"{url}/v1/models/{MODEL_NAME}:predict", data=body,
                                     headers={"Content-Type": "application/json"})
    where = f"signature {signature.name}"
    try:
        with urllib.request.urlopen(request, timeout=_remaining(deadline, where)) as answer:
            payload = answer.read()
    except urllib.error.HTTPError as err:
        raise NotServable(f"{where}: HTTP {err.code}: {_error_text(err.read())}") from None
    except (urllib.error.URLError, OSError) as err:  # refused, reset, timed out
        raise NotServable(f"{where}: no answer ({first_line(err, 300)})") from None
    problem = answer_problem(signature, payload, len(instances))
    if problem:
        raise NotServable(f"{where}: {problem}")


def _error_text(body: bytes) -> str:
    """The one-line error of a refused request (TF Serving's `{"error": ...}`, else the body)."""
    text = body.decode("utf-8", "replace")
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        text = str(json.loads(text).get("error", text))
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else "no message"


def _remaining(deadline: float, where: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise NotServable(f"{where}: no time left within push.infra_validation_timeout")
    return left


def answer_problem(signature: Signature, payload: bytes, count: int) -> str | None:
    """What is wrong with a predict answer to `count` instances, or None.

    Args:
        signature: the signature asked.
        payload: the response body.
        count: how many instances were sent.

    Returns:
        A one-line description of the first problem, or None.
    """
    try:
        predictions = json.loads(payload)["predictions"]
    except (ValueError, KeyError, TypeError):
        return f"the answer is not JSON with 'predictions': {payload[:200]!r}"
    if not isinstance(predictions, list) or len(predictions) != count:
        return f"expected {count} predictions, got {_short(predictions)}"
    for index, prediction in enumerate(predictions):
        if len(signature.outputs) == 1 and not isinstance(prediction, dict):
            prediction = {next(iter(signature.outputs)): prediction}  # TF Serving's row form
        if not isinstance(prediction, dict) or set(prediction) != set(signature.outputs):
            return (f"prediction {index} should hold {sorted(signature.outputs)}, "
                    f"got {_short(prediction)}")
        for name, (dtype, rank) in sorted(signature.outputs.items()):
            problem = _value_problem(prediction[name], dtype, rank)
            if problem:
                return f"output {name} of prediction {index}: {problem}"
    return None


def _value_problem(value, dtype: int, rank: int | None) -> str | None:
    """What is wrong with one output value of one instance: its nesting or its items."""
    items = [value]
    for _ in range(rank or 0):
        if not all(isinstance(item, list) for item in items):
            return f"expected rank {rank}, got {_short(value)}"
        items = [inner for item in items for inner in item]
    if rank is None:
        items = _flatten(value)
    for item in items:
        if dtype in _STRING and not isinstance(item, str):
            return f"expected a string, got {_short(item)}"
        if dtype in _BOOL and not isinstance(item, bool):
            return f"expected a boolean, got {_short(item)}"
        if dtype in _INTS and (isinstance(item, bool) or not isinstance(item, int)):
            return f"expected an integer, got {_short(item)}"
        if dtype in _FLOATS and (isinstance(item, bool) or not isinstance(item, (int, float))
                                 or not math.isfinite(item)):
            return f"expected a finite number, got {_short(item)}"
    return None


def _flatten(value) -> list:
    return [leaf for item in value for leaf in _flatten(item)] if isinstance(value, list) \
        else [value]


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
