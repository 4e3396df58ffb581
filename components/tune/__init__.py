"""tune (TFX Tuner): token TFRecords -> best hyperparameters, trial table and plot.

The work is in `tuning/` (`sweep.py` for the flow); this module stays cheap to import.
Output artifact `hyperparameters/`:
    best.json    the best trial's values as config overrides (`train.learning_rate`, ...),
                 which `train` applies (`components/train/hparams.py`)
    trials.csv   every trial: values, objective, tokens, seconds, status, failure reason
    plot.png     the objective against the learning rate, one series per batch size
    sweep.json   algorithm, sampler, best trial, counts, tokens spent, the sweep's project
                 directory
In a parallel sweep (KerasTuner's chief and workers, see `tuning/distributed.py`) only the
chief writes it; workers run trials and write nothing.
"""

from __future__ import annotations

from pipeline.core.component import ComponentSpec

SPEC = ComponentSpec(
    name="tune",
    module="components.tune",
    inputs={"examples": "Examples", "tokenizer": "Tokenizer"},
    outputs={"hyperparameters": "Hyperparameters"},
    config=("model", "task", "train", "tuning"),
)


def run(inputs, outputs, runtime, model, task, train, tuning):
    """Run (or resume) the sweep and write `outputs["hyperparameters"]`.

    Args:
        inputs: `examples` and `tokenizer` artifacts.
        outputs: `hyperparameters` -> the directory to write the artifact into.
        runtime: the run's `Runtime` (progress to `runtime.log`; the sweep's KerasTuner
            project lives under `runtime.root`, see `tuning/sweep.py`).
        model, task, train, tuning: the config sections.

    Returns:
        Properties of the hyperparameters artifact (none on a worker).
    """
    from tuning.sweep import Paths, run_sweep

    paths = Paths(examples=inputs["examples"].uri, tokenizer=inputs["tokenizer"].uri,
                  output=outputs["hyperparameters"], root=runtime.root)
    return run_sweep(paths, model, task, train, tuning,
                     log=lambda line: runtime.log(f"[tune] {line}"))
