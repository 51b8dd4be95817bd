"""The device mesh and where arrays live on it.

Axes: "data" (pure data parallel), "fsdp" (data parallel with parameters and optimizer state split),
"tensor" (model parallel inside matrices). The batch is split over ("data", "fsdp"); parameters
carry their own annotations (`train/model.py`). Sizes come from the config; -1 takes what is left.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from entitynet.errors import ConfigError

AXES = ("data", "fsdp", "tensor")


def make_mesh(sizes: dict[str, int], devices=None) -> jax.sharding.Mesh:
    devices = list(devices if devices is not None else jax.devices())
    shape = [int(sizes.get(a, 1)) for a in AXES]
    if shape.count(-1) > 1:
        raise ConfigError("at most one mesh axis may be -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if len(devices) % known:
            raise ConfigError(
                f"mesh {dict(zip(AXES, shape, strict=True))} does not divide {len(devices)} devices"
            )
        shape[shape.index(-1)] = len(devices) // known
    if math.prod(shape) != len(devices):
        raise ConfigError(
            f"mesh {dict(zip(AXES, shape, strict=True))} needs {math.prod(shape)} devices, found {len(devices)}"
        )
    return jax.sharding.Mesh(
        np.asarray(devices).reshape(shape), AXES, axis_types=(AxisType.Auto,) * len(AXES)
    )


def batch_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def global_batch(mesh, local: dict) -> dict:
    """Process-local numpy arrays -> one global array each, split over the batch axes."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}
