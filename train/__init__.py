"""Training, evaluation and export: a Flax NNX CLIP on Grain input, sharded with jax.jit over a device
mesh, checkpointed with Orbax; zero-shot and retrieval evaluation; open_clip export and import."""
