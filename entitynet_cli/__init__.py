"""The `entitynet` command: one thin module per stage plus `demo`, the composition root of the
project (the only package that imports the library, the Beam pipelines and the trainer together)."""
