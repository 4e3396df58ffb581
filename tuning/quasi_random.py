"""Quasi-random sampling for KerasTuner's oracles: a scrambled Halton sequence.

Independent random draws leave gaps and clumps: 27 of them put no point at all in a
given 5% of the space about a quarter of the time. A low-discrepancy sequence spreads
any n points evenly over every hyperparameter's range, which is why Google's Deep
Learning Tuning Playbook prefers quasi-random search to random search for exploring
("Why use quasi-random search instead of more sophisticated black box optimization
algorithms during the exploration phase of tuning?"). It matters most in small sweeps:
eight random-search trials ended within 5% of the best configuration in 82% of 200
replayed sweeps against 64% with independent draws (docs/tuning.md, "Quasi-random
sampling").

The oracle's `_random_values` (used by random search, by Hyperband for each new
configuration and by the Bayesian oracle for its initial points) takes the sequence's
next point instead of independent draws; each coordinate becomes a value through the
hyperparameter's own `prob_to_value`, so log sampling and choices are KerasTuner's. The
position in the sequence is the oracle's `_seed_state`, which KerasTuner saves with the
oracle: a resumed or parallel sweep goes on along the same sequence.
"""

from __future__ import annotations

import keras_tuner


def halton_point(dimensions: int, seed: int, index: int) -> list[float]:
    """Point `index` of the scrambled Halton sequence of `seed`, in [0, 1)^dimensions."""
    from scipy.stats import qmc

    engine = qmc.Halton(d=dimensions, scramble=True, rng=seed)
    engine.fast_forward(index)
    return [float(u) for u in engine.random(1)[0]]


class QuasiRandomSampling:
    """Oracle mixin: new configurations from a scrambled Halton sequence seeded by the
    oracle's seed (independent draws otherwise, KerasTuner's default)."""

    def _random_values(self):
        space = self.hyperparameters.space
        for _ in range(self._max_collisions + 1):
            point = halton_point(len(space), self.seed, self._seed_state - self.seed)
            self._seed_state += 1
            hps = keras_tuner.HyperParameters()
            for hp, prob in zip(space, point):
                hps.merge([hp])
                if hps.is_active(hp):  # only active hyperparameters get values
                    hps.values[hp.name] = hp.prob_to_value(prob)
            if not self._duplicate(hps.values):
                return hps.values
        return None  # as KerasTuner: the space is exhausted
