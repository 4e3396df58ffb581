"""train (TFX Trainer): token TFRecords (+ tuned hyperparameters, + warm start) -> a servable LM.

The work is in the modules beside this one (`session.py` for the flow); this module stays cheap
to import. `train.warm_start` is an input from outside the DAG (`resolve_warm_start`), so
the model it names is part of the cache key.
"""

from __future__ import annotations

import json
import os

from pipeline.core.component import ComponentSpec, cache_key


def resolve_warm_start(config, inputs: dict):
    """The `warm_start` input: the model `train.warm_start` names (see
    `components/train/warm_start.py`), or None when it is unset.

    Args:
        config: the resolved `LmpipeConfig`.
        inputs: the DAG inputs resolved so far (examples, tokenizer, hyperparameters).

    Returns:
        An `Artifact` or None.
    """
    from pipeline.core.contracts import model as model_contract

    if config.train.warm_start is None:
        return None
    others = {name: artifact for name, artifact in inputs.items() if name != "warm_start"}
    return model_contract.resolve(config.train.warm_start, config.push.serving_dir,
                              cache_key(SPEC, config, others))


def resolve_teacher(config, inputs: dict):
    """The `teacher` input: the model `train.distill.teacher` names (see
    `components/train/distill.py`), or None when it is unset.

    Args:
        config: the resolved `LmpipeConfig`.
        inputs: the DAG inputs resolved so far.

    Returns:
        An `Artifact` or None.
    """
    from components.train import distill

    if config.train.distill.teacher is None:
        return None
    others = {name: artifact for name, artifact in inputs.items()
              if name not in ("warm_start", "teacher")}
    return distill.resolve(config.train.distill.teacher, config.push.serving_dir,
                           cache_key(SPEC, config, others))


def resolve_init_from(config, inputs: dict):
    """The `init_from` input: the checkpoint directory `train.init_from` names
    (`models/checkpoints/`), fingerprinted by its files, or None when it is unset."""
    from pipeline.core.contracts import model as model_contract

    if config.train.init_from is None:
        return None
    return model_contract.resolve_checkpoint(config.train.init_from)


SPEC = ComponentSpec(
    name="train",
    module="components.train",
    inputs={"examples": "Examples", "tokenizer": "Tokenizer", "hyperparameters": "Hyperparameters"},
    outputs={"model": "Model"},
    config=("model", "task", "train"),
    optional_inputs=("hyperparameters",),
    resolvers={"warm_start": resolve_warm_start, "teacher": resolve_teacher,
               "init_from": resolve_init_from},
    uses_resolvers=lambda config: (config.train.warm_start is not None
                                   or config.train.distill.teacher is not None
                                   or config.train.init_from is not None),
)


def run(inputs, outputs, runtime, model, task, train):
    """Train the model on `inputs["examples"]` and write `outputs["model"]`.

    Args:
        inputs: `examples`, `tokenizer`, `hyperparameters` (None when tune did not run),
            `warm_start` (None without `train.warm_start`), `teacher` (None without
            `train.distill.teacher`) and `init_from` (None without `train.init_from`)
            artifacts.
        outputs: `model` -> the directory to write the model artifact into.
        runtime: the run's `Runtime` (progress goes to `runtime.log`; checkpoints to
            `runtime.work_dir`, when there is one).
        model: `ModelConfig`.
        task: `TaskConfig`.
        train: `TrainConfig`.

    Returns:
        Properties of the model artifact.
    """
    from components.train.session import Paths, run_fn

    hyperparameters = inputs.get("hyperparameters")
    paths = Paths(examples=inputs["examples"].uri, tokenizer=inputs["tokenizer"].uri,
                  hyperparameters=hyperparameters.uri if hyperparameters else None,
                  output=outputs["model"], work=runtime.work_dir,
                  cache=os.path.join(runtime.root, ".cache"))
    summary = run_fn(paths, model, task, train, log=lambda line: runtime.log(f"[train] {line}"),
                     warm_start=inputs.get("warm_start"), teacher=inputs.get("teacher"),
                     init_from=inputs.get("init_from"))
    warm = summary["warm_start"] or {}
    return {"model": {"eval_loss": summary["eval_loss"],
                      "hyperparameters_source": summary["hyperparameters"]["source"],
                      "warm_start": warm.get("source"), "steps": summary["steps"],
                      "weights_sha256": summary["weights_sha256"]}}


def summary(outputs) -> dict:
    """Run-level metrics: steady-state training throughput from `train_summary.json`."""
    with open(os.path.join(outputs["model"].uri, "train_summary.json"), encoding="utf-8") as f:
        return {"train_tokens_per_second": json.load(f)["train_tokens_per_second"]}
