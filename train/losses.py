"""Contrastive losses over the global batch (under sharding XLA gathers the embeddings itself).

- CLIP: symmetric softmax cross-entropy over image->text and text->image logits, the learnable
  temperature's scale clamped at 100.
- SigLIP: every image-text pair is an independent binary classification (positives on the
  diagonal), logits = scale * cos + bias, summed over texts, averaged over images.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

MAX_LOGIT_SCALE = math.log(100.0)


def clip_loss(zi, zt, logit_scale):
    scale = jnp.exp(jnp.minimum(logit_scale, MAX_LOGIT_SCALE))
    logits = scale * zi @ zt.T
    labels = jnp.arange(logits.shape[0])
    ce = optax.softmax_cross_entropy_with_integer_labels
    return (ce(logits, labels).mean() + ce(logits.T, labels).mean()) / 2


def siglip_loss(zi, zt, logit_scale, logit_bias):
    logits = jnp.exp(logit_scale) * zi @ zt.T + logit_bias
    signs = 2 * jnp.eye(logits.shape[0]) - 1
    return -jnp.sum(jax.nn.log_sigmoid(signs * logits), axis=-1).mean()


def contrastive_loss(kind: str, zi, zt, logit_scale, logit_bias):
    if kind == "clip":
        return clip_loss(zi, zt, logit_scale)
    if kind == "siglip":
        return siglip_loss(zi, zt, logit_scale, logit_bias)
    raise ValueError(f"unknown loss {kind!r}: use clip or siglip")


def in_batch_accuracy(zi, zt):
    """Image->text top-1 accuracy within the batch (a health check, not an evaluation)."""
    return jnp.mean(jnp.argmax(zi @ zt.T, axis=-1) == jnp.arange(zi.shape[0]))
