"""The KerasTuner `HyperModel`: `build` makes the trial's model, `fit` trains it.

It declares no hyperparameters: the space is data (`space.hyperparameters`, handed to
the oracle), and this class only reads a trial's values. `fit` rebuilds the input
pipeline with the trial's batch size and trains for the trial's token budget.
"""

from __future__ import annotations

import keras_tuner

from tuning import space, trial
from tuning.budget import TokenBudget, TrialPlan


class LmHyperModel(keras_tuner.HyperModel):
    """Trials of the configured LM.

    Args:
        context: the sweep's `trial.Context`.
        train_config: the config's `TrainConfig` (defaults of what is not tuned).
        model_config: the config's `ModelConfig`.
        budget: the sweep's `TokenBudget`.
    """

    def __init__(self, context: trial.Context, train_config, model_config, budget: TokenBudget):
        super().__init__(name="lmpipe_lm", tunable=False)
        self.context = context
        self.train_config = train_config
        self.model_config = model_config
        self.budget = budget

    def plan(self, values: dict) -> TrialPlan:
        """The steps of the trial with these values."""
        return self.budget.plan(values, space.batch_size(values, self.train_config),
                                self.context.spec.sequence_length)

    def configs(self, values: dict):
        """(train_config, model_config) of the trial with these values."""
        plan = self.plan(values)
        # The schedule spans the full budget; periodic evaluation, early stopping and
        # checkpoints of the trainer's own would break the equal budgets or are not needed.
        return space.trial_configs(values, self.train_config, self.model_config,
                                   steps=plan.schedule_steps, max_tokens=None,
                                   eval_every=None, early_stopping_patience=None,
                                   checkpoint_every=None, warm_start=None)

    def build(self, hp):
        train_config, model_config = self.configs(hp.values)
        return trial.build(self.context, train_config, model_config)

    def fit(self, hp, model, *args, checkpoint_in=None, checkpoint_out=None, log=None,
            **kwargs):
        """Train `model` for the trial's budget and evaluate it.

        Args:
            hp: the trial's `HyperParameters`.
            model: the model `build` returned.
            checkpoint_in: the parent trial's checkpoint (Hyperband), or None.
            checkpoint_out: where to save this trial's end state, or None.
            log: progress lines (None: none).

        Returns:
            The `trial.Outcome`.
        """
        train_config, model_config = self.configs(hp.values)
        return trial.train_and_evaluate(self.context, model, train_config, model_config,
                                        self.plan(hp.values), checkpoint_in, checkpoint_out,
                                        log or (lambda line: None))
