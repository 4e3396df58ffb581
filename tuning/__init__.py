"""Hyperparameter search for the `tune` component (KerasTuner, TFX's Tuner).

`space` turns `tuning.space` (data) into KerasTuner hyperparameters, `budget` gives every
trial the same number of tokens, `hypermodel` and `trial` build and train one trial with
the trainer's own loop, `tuner` runs the search, `results` writes the artifact, `sweep`
ties them together and `distributed` sets up KerasTuner's chief/worker mode.
"""
