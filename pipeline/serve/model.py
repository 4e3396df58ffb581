"""One loaded version of a model: its signatures, how to call them on a batch of rows,
and how many requests are using it (so that a replaced version is unloaded only once the
requests that started on it have finished).

Served signatures: `generate` (lmpipe's contract, `pipeline.serving.GENERATE_INPUTS`) and
every signature that takes one string tensor of texts (`score`, `classify`). The
`*_examples` signatures take serialized `tf.Example`s, which only the evaluator sends;
they are listed in the metadata but not served.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from pipeline.core.errors import UsageError, first_line
from pipeline.serving import check_generate_signature

# Sampling arguments of `generate`, in the order a batch key holds them.
SAMPLING = ("max_new_tokens", "temperature", "top_k", "top_p", "seed")


@dataclass
class Signature:
    """A served signature.

    Attributes:
        name: its name.
        text_input: the name of its input of texts (`prompt` for `generate`).
        function: the concrete function.
    """

    name: str
    text_input: str
    function: object

    def metadata(self) -> dict:
        """TF Serving's `SignatureDef` JSON of this signature (inputs, outputs)."""
        _, inputs = self.function.structured_input_signature
        return {"inputs": {name: _tensor_info(spec) for name, spec in inputs.items()},
                "outputs": {name: _tensor_info(spec)
                            for name, spec in self.function.structured_outputs.items()},
                "method_name": "tensorflow/serving/predict"}


def _tensor_info(spec) -> dict:
    dims = [] if spec.shape.rank is None else [{"size": str(-1 if d is None else d)}
                                               for d in spec.shape.as_list()]
    from tensorflow.core.framework import types_pb2

    return {"dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum),
            "tensor_shape": {"dim": dims},
            "name": spec.name or ""}


@dataclass
class LoadedModel:
    """A version in memory.

    Attributes:
        version: its number (0 for a SavedModel outside a serving directory).
        path: its SavedModel directory.
        signatures: the served signatures by name.
        all_signatures: every signature's name (for the metadata route).
        kind: `generate` for a language model, else the first text signature's name.
    """

    version: int
    path: str
    signatures: dict
    all_signatures: dict
    kind: str
    _model: object = None
    _users: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _idle: threading.Event = field(default_factory=threading.Event)

    def acquire(self) -> "LoadedModel":
        """Count a request that uses this version (release it when done)."""
        with self._lock:
            self._users += 1
            self._idle.clear()
        return self

    def release(self) -> None:
        """The request that acquired this version has finished."""
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._idle.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no request uses this version. Returns whether it is idle."""
        with self._lock:
            if self._users == 0:
                return True
        return self._idle.wait(timeout)

    def unload(self) -> None:
        """Drop the SavedModel (its memory is freed with the last reference)."""
        self.signatures, self._model = {}, None

    def call(self, name: str, texts: list[str], sampling: tuple = ()) -> list:
        """Call a signature on a batch of rows.

        Args:
            name: the signature.
            texts: one text (prompt) per row.
            sampling: for `generate`, the values of `SAMPLING`.

        Returns:
            One result per row: the value of the only output, or {output: value}.
        """
        import tensorflow as tf

        signature = self.signatures[name]
        kwargs = {signature.text_input: tf.constant(texts, tf.string)}
        if name == "generate":
            dtypes = (tf.int32, tf.float32, tf.int32, tf.float32, tf.int32)
            kwargs.update({key: tf.constant(value, dtype)
                           for key, value, dtype in zip(SAMPLING, sampling, dtypes)})
        outputs = {key: value.numpy() for key, value in signature.function(**kwargs).items()}
        rows = [{key: to_json(value[i]) for key, value in outputs.items()}
                for i in range(len(texts))]
        return [next(iter(row.values())) if len(row) == 1 else row for row in rows]

    def warm(self, defaults: dict) -> None:
        """Call each served signature once, so that the first request does not pay for
        tracing and the kernels' first run (TF Serving's warm-up)."""
        for name in self.signatures:
            sampling = tuple(dict(defaults, max_new_tokens=1)[key] for key in SAMPLING)
            self.call(name, ["warm up"], sampling if name == "generate" else ())


def to_json(value):
    """A NumPy scalar or array of a signature's output as JSON (bytes as UTF-8 text)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "tolist"):
        value = value.tolist()
        if isinstance(value, list):
            return [to_json(item) for item in value]
        return to_json(value)
    return value


def load(path: str, version: int) -> LoadedModel:
    """Load a SavedModel and pick the signatures to serve.

    Args:
        path: the SavedModel directory.
        version: its version number.

    Returns:
        The loaded model (not yet warmed).

    Raises:
        UsageError: it does not load, or serves none of `generate`, `score`, `classify`.
    """
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the model uses)

    try:
        model = tf.saved_model.load(path)
    except Exception as err:  # noqa: BLE001  (any failure to load is the answer)
        raise UsageError(f"--model {path}: cannot load SavedModel ({first_line(err)})") from None
    served = {}
    for name, function in model.signatures.items():
        _, inputs = function.structured_input_signature
        if name == "generate":
            check_generate_signature(function, path)
            served[name] = Signature(name, "prompt", function)
        elif (len(inputs) == 1 and next(iter(inputs.values())).dtype == tf.string
              and not name.endswith("_examples")):
            served[name] = Signature(name, next(iter(inputs)), function)
    if not served:
        raise UsageError(f"--model {path}: no signature to serve (has "
                         f"{', '.join(sorted(model.signatures)) or 'none'})")
    kind = "generate" if "generate" in served else ("classify" if "classify" in served
                                                    else sorted(served)[0])
    return LoadedModel(version=version, path=path, signatures=served,
                       all_signatures=dict(model.signatures), kind=kind, _model=model)
