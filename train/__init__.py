"""Training, evaluation and export (Flax NNX, Grain, Orbax): arrives with issues 5 and 6."""
