"""Infra validation before push (issue 22): the candidate is served by a fresh `lmpipe serve`
process and must answer a canary per client signature, or it is not pushed; the serving
process is always stopped."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from components import push
from components.push import infra
from pipeline.core.config import PushConfig
from pipeline.core.contracts import serving_dir
from pipeline.local_runner import Runtime
from tests import lm_fixtures as lm

# Signature outputs as `read_signatures` gives them: (dtype enum, rank per instance).
STRING, FLOAT, INT64 = 7, 1, 9
SCORE = infra.Signature("score", {"text": STRING},
                        {"nll": (FLOAT, 0), "num_tokens": (INT64, 0), "num_bytes": (INT64, 0)})
CLASSIFY = infra.Signature("classify", {"text": STRING},
                           {"label": (STRING, 0), "probabilities": (FLOAT, 1)})
GENERATE = infra.Signature("generate", {}, {"completion": (STRING, 0)})


def _module(kind: str):
    """A SavedModel module that loads in Python: `nan_score` (score answers NaN),
    `generate_fails` (generate raises for more than one new token, so the server's
    one-token warm-up passes and the canary fails), `generate_always_fails` (the warm-up
    fails too), `classifier` (a good classifier)."""
    import tensorflow as tf

    from models.export import GENERATE_SIGNATURE

    text = [tf.TensorSpec([None], tf.string, name="text")]

    # The fewest new tokens for which `generate` raises.
    failing = 1 if kind == "generate_always_fails" else 2

    class Module(tf.Module):
        @tf.function(input_signature=text)
        def score(self, text):
            rows = tf.shape(text)[0]
            return {"nll": tf.fill([rows], float("nan")),
                    "num_tokens": tf.ones([rows], tf.int64), "num_bytes": tf.ones([rows], tf.int64)}

        @tf.function(input_signature=GENERATE_SIGNATURE)
        def generate(self, prompt, max_new_tokens, temperature, top_k, top_p, seed):
            tf.debugging.assert_less(max_new_tokens, failing, message="the decoder is broken")
            return {"completion": prompt}

        @tf.function(input_signature=text)
        def classify(self, text):
            rows = tf.shape(text)[0]
            return {"label": tf.fill([rows], "positive"),
                    "probabilities": tf.tile([[0.25, 0.75]], [rows, 1])}

    module = Module()
    chosen = {"nan_score": ("score",), "generate_fails": ("generate",),
              "generate_always_fails": ("generate",), "classifier": ("classify",)}[kind]
    return module, {name: getattr(module, name) for name in chosen}


def _write_model(directory: Path, kind: str) -> Path:
    """A model artifact: the bigram LM of `tests.lm_fixtures` (`good`) or a `_module`."""
    import tensorflow as tf

    if kind == "good":
        lm.write_bigram_model(directory, seed=1, sequence_length=16)
    else:
        module, signatures = _module(kind)
        tf.saved_model.save(module, str(directory / "saved_model"), signatures=signatures)
    return directory


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("infra")
    return {kind: _write_model(root / kind, kind)
            for kind in ("good", "nan_score", "generate_fails", "classifier")}


def _push(tmp_path: Path, model: Path, **settings) -> dict:
    """Push `model` with a blessing judged against nothing in particular; its record."""
    blessing, out = tmp_path / "blessing", tmp_path / "pushed"
    blessing.mkdir()
    out.mkdir()
    digest = serving_dir.saved_model_digest(str(model / "saved_model"))
    (blessing / "blessing.json").write_text(json.dumps({
        "blessed": True, "failures": [], "baseline": None, "metrics": {},
        "candidate": {"uri": str(model), "fingerprint": "fp", "saved_model_sha256": digest}}))
    inputs = {"model": lm.artifact("Model", model, "fp-model"),
              "blessing": lm.artifact("ModelBlessing", blessing, "fp-blessing")}
    push.run(inputs, {"pushed": str(out)}, Runtime(run_id="run-1", root=str(tmp_path)),
             push=PushConfig(serving_dir=str(tmp_path / "serving"), **settings))
    return json.loads((out / "push.json").read_text())


def _servers_of(path: Path) -> list[int]:
    """Processes whose command line names `path` (a serving process left running)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(path).encode() in command and int(pid) != os.getpid():
            found.append(int(pid))
    return found


# --- the answer check, on answers as TF Serving's REST API gives them ---

@pytest.mark.parametrize("signature, answer, problem", [
    (SCORE, {"predictions": [{"nll": 1.5, "num_tokens": 3, "num_bytes": 9}] * 2}, None),
    (GENERATE, {"predictions": ["abc", ""], "model_version": "0"}, None),
    (CLASSIFY, {"predictions": [{"label": "a", "probabilities": [0.5, 0.5]}] * 2}, None),
    (SCORE, {"predictions": [{"nll": float("nan"), "num_tokens": 3, "num_bytes": 9}] * 2},
     "output nll of prediction 0: expected a finite number, got nan"),
    (SCORE, {"predictions": [{"nll": 1.5, "num_tokens": 3.5, "num_bytes": 9}] * 2},
     "output num_tokens of prediction 0: expected an integer, got 3.5"),
    (SCORE, {"predictions": [{"nll": 1.5, "num_tokens": 3}] * 2},
     "prediction 0 should hold ['nll', 'num_bytes', 'num_tokens'], "
     "got {\"nll\": 1.5, \"num_tokens\": 3}"),
    (GENERATE, {"predictions": ["abc"]}, 'expected 2 predictions, got ["abc"]'),
    (GENERATE, {"predictions": ["abc", 7]}, "output completion of prediction 1: "
                                            "expected a string, got 7"),
    (CLASSIFY, {"predictions": [{"label": "a", "probabilities": 0.5}] * 2},
     "output probabilities of prediction 0: expected rank 1, got 0.5"),
    (CLASSIFY, {"predictions": [{"label": "a", "probabilities": [0.5, True]}] * 2},
     "output probabilities of prediction 0: expected a finite number, got true"),
])
def test_an_answer_must_have_the_declared_outputs_shapes_and_types(signature, answer, problem):
    payload = json.dumps(answer).encode()
    assert infra.answer_problem(signature, payload, 2) == problem


def test_an_answer_that_is_not_json_is_a_problem():
    assert infra.answer_problem(SCORE, b"<html>oops</html>", 2) == (
        "the answer is not JSON with 'predictions': b'<html>oops</html>'")


# --- through push, with the real `lmpipe serve` ---

def test_a_model_that_serves_is_validated_and_pushed(tmp_path, models, capfd):
    record = _push(tmp_path, models["good"])
    assert record["pushed"] is True and record["version"] == 1
    served = record["infra_validation"]
    assert served["passed"] is True and served["problem"] is None
    assert served["checked"] == ["generate", "score"] and served["skipped"] == ["score_examples"]
    assert 0 < served["seconds"] < 60
    assert "[push] infra validation: a fresh server answered generate, score in" in (
        capfd.readouterr().err)
    assert _servers_of(models["good"] / "saved_model") == []


def test_a_classifier_is_validated_with_its_classify_signature(tmp_path, models):
    record = _push(tmp_path, models["classifier"])
    assert record["pushed"] is True
    assert record["infra_validation"]["checked"] == ["classify"]


@pytest.mark.parametrize("kind, reason", [
    ("nan_score", "not servable: signature score: output nll of prediction 0: "
                  "expected a finite number, got nan"),
    ("generate_fails", "not servable: signature generate: HTTP 500: InvalidArgumentError"),
])
def test_a_model_that_loads_but_fails_its_canary_is_not_pushed(tmp_path, models, capfd, kind,
                                                                reason):
    record = _push(tmp_path, models[kind])
    assert record["pushed"] is False and record["version"] is None
    assert record["reason"].startswith(reason), record["reason"]
    assert record["infra_validation"]["passed"] is False
    assert not (tmp_path / "serving").exists() or os.listdir(tmp_path / "serving") == []
    push_lines = [line for line in capfd.readouterr().err.splitlines()
                  if line.startswith("[push]")]
    assert push_lines == [f"[push] {record['reason']}; serving stays at nothing"]
    assert _servers_of(models[kind] / "saved_model") == []


def test_a_model_the_server_cannot_warm_up_is_not_pushed(tmp_path):
    """Its generate fails on every call, so the server exits at warm-up: the reason is the
    server's own one-line error."""
    model = _write_model(tmp_path / "model", "generate_always_fails")
    record = _push(tmp_path, model)
    assert record["pushed"] is False
    assert record["reason"].startswith(
        "not servable: the server exited with status 2 before it was ready: "), record["reason"]
    assert f"--model {model / 'saved_model'}: " in record["reason"]  # the server's line


def test_validation_off_pushes_without_a_server(tmp_path, models):
    record = _push(tmp_path, models["nan_score"], infra_validation=False)
    assert record["pushed"] is True and record["infra_validation"] is None


# --- a server that never becomes ready (a stand-in process: it ignores SIGTERM) ---

STANDIN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(os.environ["STANDIN_PID_FILE"], "w").write(str(os.getpid()))
print("loading, not ready", flush=True)
if os.environ.get("STANDIN_EXIT"):
    print("lmpipe serve: --model x: cannot load SavedModel (broken)", file=sys.stderr)
    sys.exit(2)
time.sleep(600)
"""


def test_a_server_that_is_never_ready_is_killed_at_the_timeout(tmp_path, models, monkeypatch):
    monkeypatch.setattr(infra, "SERVE_ARGS", ("-c", STANDIN))
    monkeypatch.setattr(infra, "STOP_SECONDS", 1.0)
    monkeypatch.setenv("STANDIN_PID_FILE", str(tmp_path / "pid"))
    infra.read_signatures(str(models["good"] / "saved_model"))  # TensorFlow imported first
    started = time.monotonic()
    result = infra.validate(str(models["good"] / "saved_model"), timeout=2.0)
    elapsed = time.monotonic() - started
    assert result["passed"] is False and result["checked"] == []
    assert result["problem"] == ("the server was not ready within "
                                 "push.infra_validation_timeout; it was stopped")
    assert 2.0 <= elapsed < 2.0 + 1.0 + 2.0  # the timeout, SIGTERM ignored for 1 s, SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)


def test_a_server_that_exits_gives_its_last_error_line(tmp_path, models, monkeypatch):
    monkeypatch.setattr(infra, "SERVE_ARGS", ("-c", STANDIN))
    monkeypatch.setenv("STANDIN_PID_FILE", str(tmp_path / "pid"))
    monkeypatch.setenv("STANDIN_EXIT", "1")
    result = infra.validate(str(models["good"] / "saved_model"), timeout=30.0)
    assert result["problem"] == ("the server exited with status 2 before it was ready: "
                                 "lmpipe serve: --model x: cannot load SavedModel (broken)")
