"""Reading a predict request as TF Serving's REST API does, and refusing a bad one with a
one-line reason (the server answers it as a 4xx `{"error": ...}`).

A request body is `{"signature_name": ..., "instances": [...]}` (the row format: one
instance per row) or `{"signature_name": ..., "inputs": ...}` (the columnar format). A
`generate` instance is `{"prompt": "...", "max_new_tokens": .., "temperature": ..,
"top_k": .., "top_p": .., "seed": ..}`, the sampling arguments optional (`lmpipe
generate`'s defaults); a `score`/`classify` instance is `{"text": "..."}` or the bare
string.

Bounds: a body of at most `MAX_BODY_BYTES`, at most `MAX_INSTANCES` rows, a text of
1..`MAX_TEXT_BYTES` bytes of UTF-8, `max_new_tokens` in 1..`MAX_NEW_TOKENS`.
"""

from __future__ import annotations

import math

from pipeline.core.errors import UsageError
from pipeline.serve.model import SAMPLING, LoadedModel
from pipeline.serving import check_sampling

MAX_BODY_BYTES = 2**20
MAX_INSTANCES = 64
MAX_TEXT_BYTES = 64 * 2**10
MAX_NEW_TOKENS = 1024
# `check_sampling` names the command line's flags; a request names the signature's inputs.
_FIELD_OF_FLAG = {"--max-tokens": "max_new_tokens", "--temperature": "temperature",
                  "--top-k": "top_k", "--top-p": "top_p", "--seed": "seed"}
_INTEGERS = ("max_new_tokens", "top_k", "seed")


class BadRequest(Exception):
    """A request the server refuses: `status` (4xx) and a one-line message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def signature_of(body, model: LoadedModel) -> str:
    """The signature a predict body asks for (the model's default when it names none).

    Raises:
        BadRequest: the body is not an object, or the signature is not served.
    """
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    name = body.get("signature_name", model.kind)
    if not isinstance(name, str):
        raise BadRequest("'signature_name' must be a string")
    if name not in model.signatures:
        raise BadRequest(f"signature '{name}' is not served (serving: "
                         f"{', '.join(sorted(model.signatures))})")
    return name


def rows_of(body: dict, signature: str, text_input: str, defaults: dict) -> tuple[list, bool]:
    """The rows of a predict body.

    Args:
        body: the request's JSON object.
        signature: the signature it calls.
        text_input: that signature's input of texts (`prompt`, `text`).
        defaults: `generate`'s sampling defaults ({name: value} for `SAMPLING`).

    Returns:
        ([(text, sampling tuple)], whether the body was in the columnar format).

    Raises:
        BadRequest: anything missing, of the wrong type or out of bounds.
    """
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest("the body must have exactly one of 'instances' and 'inputs'")
    unknown = set(body) - {"instances", "inputs", "signature_name"}
    if unknown:
        raise BadRequest(f"unknown key '{sorted(unknown)[0]}' in the request body")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadRequest("'instances' must be a non-empty list")
        _check_count(len(instances))
        return [instance_of(item, signature, text_input, defaults) for item in instances], False
    return _columns(body["inputs"], signature, text_input, defaults), True


def _columns(inputs, signature: str, text_input: str, defaults: dict) -> list:
    """The rows of the columnar format: `{input: value or list}`, or the list of texts."""
    if not isinstance(inputs, dict):
        inputs = {text_input: inputs}
    texts = inputs.get(text_input)
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise BadRequest(f"'inputs' must give '{text_input}' as a string or a non-empty list")
    _check_count(len(texts))
    scalars = {key: value for key, value in inputs.items() if key != text_input}
    return [instance_of({text_input: text, **scalars}, signature, text_input, defaults)
            for text in texts]


def _check_count(count: int) -> None:
    if count > MAX_INSTANCES:
        raise BadRequest(f"at most {MAX_INSTANCES} instances per request, got {count}")


def instance_of(item, signature: str, text_input: str, defaults: dict) -> tuple[str, tuple]:
    """One row: its text and (for `generate`) its sampling settings.

    Raises:
        BadRequest: as `rows_of`.
    """
    if isinstance(item, str):
        item = {text_input: item}
    if not isinstance(item, dict):
        raise BadRequest(f"an instance must be an object with '{text_input}' or a string")
    allowed = {text_input, *(SAMPLING if signature == "generate" else ())}
    unknown = set(item) - allowed
    if unknown:
        raise BadRequest(f"unknown input '{sorted(unknown)[0]}' for signature '{signature}' "
                         f"(takes {', '.join(sorted(allowed))})")
    if text_input not in item:
        raise BadRequest(f"missing input '{text_input}'")
    text = check_text(item[text_input], text_input)
    if signature != "generate":
        return text, ()
    return text, sampling_of(item, defaults)


def check_text(value, name: str) -> str:
    """A text input: a non-empty string of at most `MAX_TEXT_BYTES` bytes of UTF-8."""
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string, got {type(value).__name__}")
    if not value:
        raise BadRequest(f"'{name}' is empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        raise BadRequest(f"'{name}' is not valid UTF-8") from None
    if size > MAX_TEXT_BYTES:
        raise BadRequest(f"'{name}' is {size} bytes; at most {MAX_TEXT_BYTES}")
    return value


def sampling_of(item: dict, defaults: dict) -> tuple:
    """The sampling settings of a `generate` instance, as a tuple in `SAMPLING` order.

    Raises:
        BadRequest: a value of the wrong type or out of the signature's range.
    """
    values = {key: item.get(key, defaults[key]) for key in SAMPLING}
    for key, value in values.items():
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or (key in _INTEGERS and not isinstance(value, int)):
            kind = "an integer" if key in _INTEGERS else "a number"
            raise BadRequest(f"'{key}' must be {kind}, got {value!r}"[:200])
    if isinstance(values["temperature"], float) and math.isnan(values["temperature"]):
        raise BadRequest("'temperature' must be >= 0 (0 = greedy), got NaN")
    try:
        # Unconverted: float() of a huge integer would raise instead of being refused.
        check_sampling(values["max_new_tokens"], values["temperature"], values["top_k"],
                       values["top_p"], 0, values["seed"])
    except UsageError as err:
        message = str(err)
        flag = message.split(" ", 1)[0]
        raise BadRequest(message.replace(flag, _FIELD_OF_FLAG.get(flag, flag), 1)) from None
    if values["max_new_tokens"] > MAX_NEW_TOKENS:
        raise BadRequest(f"'max_new_tokens' must be at most {MAX_NEW_TOKENS}, "
                         f"got {values['max_new_tokens']}")
    return tuple(float(values[key]) if key in ("temperature", "top_p") else values[key]
                 for key in SAMPLING)
