"""A CLIP in Flax NNX: a ViT image tower, a transformer text tower, projections, a learnable
temperature and the sigmoid loss's bias.

Module and parameter names follow open_clip's (`visual.conv1`, `visual.class_embedding`,
`visual.transformer.resblocks[i].attn.in_proj`, `ln_final`, `text_projection`, `logit_scale`, ...)
and the presets use open_clip's exact dimensions, so weights move between the two by renaming and
transposing (`train/export.py`).

Every parameter carries a sharding annotation over the mesh axes ("data", "fsdp", "tensor"):
matrices are split over `fsdp` on their model dimension and over `tensor` on their hidden one, so
the model is born sharded when created under `jax.jit` with a mesh (see `train/sharding.py`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

P_IN_HIDDEN = ("fsdp", "tensor")  # (model dim, hidden dim) matrices
P_HIDDEN_IN = ("tensor", "fsdp")


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    pool: str = "tok"  # tok (class token, as CLIP), gap (average), map (attention pooling)
    posemb: str = "learn"  # learn, or sincos2d (fixed)


@dataclasses.dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 49408
    context_length: int = 32  # the reference's; open_clip's pretrained models use 77
    width: int = 512
    layers: int = 12
    heads: int = 8
    mlp_ratio: float = 4.0
    causal: bool = True  # CLIP; False with pool="last" is SigLIP's text tower
    pool: str = "eot"  # eot: the first end-of-text token; last: the last non-padding token
    eot_id: int = 2
    pad_id: int = 0


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    embed_dim: int = 512
    vision: VisionConfig = VisionConfig()
    text: TextConfig = TextConfig()
    quick_gelu: bool = False  # OpenAI's pretrained CLIPs use QuickGELU
    init_logit_scale: float = math.log(1 / 0.07)
    init_logit_bias: float = -10.0
    dtype: str = "float32"  # compute dtype; parameters stay float32

    def replace(self, **kw) -> CLIPConfig:
        return dataclasses.replace(self, **kw)


def _preset(embed, v_width, v_layers, patch, t_width, t_heads, t_layers=12, image=224) -> CLIPConfig:
    return CLIPConfig(
        embed_dim=embed,
        vision=VisionConfig(
            image_size=image, patch_size=patch, width=v_width, layers=v_layers, heads=v_width // 64
        ),
        text=TextConfig(width=t_width, heads=t_heads, layers=t_layers),
    )


# open_clip's model configs (ViT-S-32, ViT-B-32, ViT-B-16, ViT-L-14): same widths, depths, heads, patches.
PRESETS = {
    "tiny": CLIPConfig(
        embed_dim=32,
        vision=VisionConfig(image_size=32, patch_size=8, width=32, layers=2, heads=2),
        text=TextConfig(vocab_size=512, context_length=16, width=32, layers=2, heads=2),
    ),
    "S/32": _preset(384, 384, 12, 32, 384, 6),
    "B/32": _preset(512, 768, 12, 32, 512, 8),
    "B/16": _preset(512, 768, 12, 16, 512, 8),
    "L/14": _preset(768, 1024, 24, 14, 768, 12),
}


def preset(name: str, **overrides) -> CLIPConfig:
    """A preset with `vision`/`text` fields overridden by `vision_<field>` / `text_<field>` keys."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}: use one of {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    v = {k[7:]: val for k, val in overrides.items() if k.startswith("vision_")}
    t = {k[5:]: val for k, val in overrides.items() if k.startswith("text_")}
    rest = {k: val for k, val in overrides.items() if not k.startswith(("vision_", "text_"))}
    return cfg.replace(
        vision=dataclasses.replace(cfg.vision, **v), text=dataclasses.replace(cfg.text, **t), **rest
    )


def _param(init, shape, spec, rngs: nnx.Rngs) -> nnx.Param:
    return nnx.Param(nnx.with_partitioning(init, spec)(rngs.params(), shape, jnp.float32))


def _linear(din, dout, spec, rngs, dtype, bias=True, std=None) -> nnx.Linear:
    init = nnx.initializers.normal(std) if std else nnx.initializers.lecun_normal()
    return nnx.Linear(
        din,
        dout,
        use_bias=bias,
        kernel_init=nnx.with_partitioning(init, spec),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (spec[1],)),
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def _norm(width, dtype, rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(
        width,
        epsilon=1e-5,
        dtype=dtype,
        param_dtype=jnp.float32,
        scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), (None,)),
        bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (None,)),
        rngs=rngs,
    )


class Attention(nnx.Module):
    """Multi-head self-attention with one fused qkv projection (open_clip's in_proj / out_proj)."""

    def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs, dtype):
        self.heads = heads
        self.in_proj = _linear(width, 3 * width, P_IN_HIDDEN, rngs, dtype)
        self.out_proj = _linear(width, width, P_HIDDEN_IN, rngs, dtype)

    def __call__(self, x, causal: bool = False):
        b, n, w = x.shape
        qkv = self.in_proj(x).reshape(b, n, 3, self.heads, w // self.heads)
        out = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], is_causal=causal)
        return self.out_proj(out.reshape(b, n, w))


class Mlp(nnx.Module):
    def __init__(self, width: int, hidden: int, quick_gelu: bool, *, rngs: nnx.Rngs, dtype):
        self.c_fc = _linear(width, hidden, P_IN_HIDDEN, rngs, dtype)
        self.c_proj = _linear(hidden, width, P_HIDDEN_IN, rngs, dtype)
        self.quick_gelu = quick_gelu

    def __call__(self, x):
        h = self.c_fc(x)
        h = h * jax.nn.sigmoid(1.702 * h) if self.quick_gelu else jax.nn.gelu(h, approximate=False)
        return self.c_proj(h)


class ResidualBlock(nnx.Module):
    def __init__(self, width, heads, mlp_ratio, quick_gelu, *, rngs, dtype):
        self.ln_1 = _norm(width, dtype, rngs)
        self.attn = Attention(width, heads, rngs=rngs, dtype=dtype)
        self.ln_2 = _norm(width, dtype, rngs)
        self.mlp = Mlp(width, int(width * mlp_ratio), quick_gelu, rngs=rngs, dtype=dtype)

    def __call__(self, x, causal=False):
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nnx.Module):
    def __init__(self, width, layers, heads, mlp_ratio, quick_gelu, *, rngs, dtype):
        self.resblocks = nnx.List(
            [
                ResidualBlock(width, heads, mlp_ratio, quick_gelu, rngs=rngs, dtype=dtype)
                for _ in range(layers)
            ]
        )

    def __call__(self, x, causal=False):
        for block in self.resblocks:
            x = block(x, causal)
        return x


def sincos_2d(grid: int, width: int) -> np.ndarray:
    """Fixed 2-D sine-cosine position embeddings (grid*grid, width), as in MoCo v3 / big_vision."""
    y, x = np.mgrid[:grid, :grid].astype(np.float32)
    omega = 1.0 / 10000 ** (np.arange(width // 4, dtype=np.float32) / (width // 4))
    y, x = np.einsum("n,d->nd", y.ravel(), omega), np.einsum("n,d->nd", x.ravel(), omega)
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)


class MapHead(nnx.Module):
    """Multihead attention pooling: a learned probe attends over the tokens (big_vision's "map")."""

    def __init__(self, width, heads, mlp_ratio, quick_gelu, *, rngs, dtype):
        self.probe = _param(nnx.initializers.normal(0.02), (1, 1, width), (None, None, "fsdp"), rngs)
        self.heads = heads
        self.q = _linear(width, width, P_IN_HIDDEN, rngs, dtype)
        self.kv = _linear(width, 2 * width, P_IN_HIDDEN, rngs, dtype)
        self.out = _linear(width, width, P_HIDDEN_IN, rngs, dtype)
        self.ln = _norm(width, dtype, rngs)
        self.mlp = Mlp(width, int(width * mlp_ratio), quick_gelu, rngs=rngs, dtype=dtype)

    def __call__(self, x):
        b, n, w = x.shape
        q = self.q(jnp.broadcast_to(self.probe[...].astype(x.dtype), (b, 1, w))).reshape(b, 1, self.heads, -1)
        kv = self.kv(x).reshape(b, n, 2, self.heads, w // self.heads)
        y = self.out(jax.nn.dot_product_attention(q, kv[:, :, 0], kv[:, :, 1]).reshape(b, 1, w))
        y = y + self.mlp(self.ln(y))
        return y[:, 0]


class VisionTransformer(nnx.Module):
    def __init__(self, cfg: VisionConfig, embed_dim: int, quick_gelu: bool, *, rngs: nnx.Rngs, dtype):
        self.cfg = cfg
        w, p = cfg.width, cfg.patch_size
        if cfg.image_size % p:
            raise ValueError(f"image size {cfg.image_size} is not a multiple of the patch size {p}")
        grid = cfg.image_size // p
        self.conv1 = nnx.Conv(
            3,
            w,
            kernel_size=(p, p),
            strides=(p, p),
            padding="VALID",
            use_bias=False,
            kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, None, None, "fsdp")),
            dtype=dtype,
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        scale = w**-0.5
        tokens = grid * grid + (1 if cfg.pool == "tok" else 0)
        if cfg.pool == "tok":
            self.class_embedding = _param(nnx.initializers.normal(scale), (w,), ("fsdp",), rngs)
        if cfg.posemb == "learn":
            self.positional_embedding = _param(
                nnx.initializers.normal(scale), (tokens, w), (None, "fsdp"), rngs
            )
        elif cfg.posemb == "sincos2d":
            table = sincos_2d(grid, w)
            if cfg.pool == "tok":
                table = np.concatenate([np.zeros((1, w), np.float32), table])
            self.fixed_posemb = nnx.Variable(jnp.asarray(table))
        else:
            raise ValueError(f"unknown position embedding {cfg.posemb!r}: use learn or sincos2d")
        self.ln_pre = _norm(w, dtype, rngs)
        self.transformer = Transformer(
            w, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu, rngs=rngs, dtype=dtype
        )
        self.ln_post = _norm(w, dtype, rngs)
        if cfg.pool == "map":
            self.attn_pool = MapHead(w, cfg.heads, cfg.mlp_ratio, quick_gelu, rngs=rngs, dtype=dtype)
        elif cfg.pool not in ("tok", "gap"):
            raise ValueError(f"unknown pooling {cfg.pool!r}: use tok, gap or map")
        self.proj = _param(nnx.initializers.normal(scale), (w, embed_dim), ("fsdp", None), rngs)

    def __call__(self, images):
        x = self.conv1(images)  # (b, grid, grid, width)
        b = x.shape[0]
        x = x.reshape(b, -1, x.shape[-1])
        if self.cfg.pool == "tok":
            cls = jnp.broadcast_to(self.class_embedding[...].astype(x.dtype), (b, 1, x.shape[-1]))
            x = jnp.concatenate([cls, x], axis=1)
        pos = self.positional_embedding[...] if self.cfg.posemb == "learn" else self.fixed_posemb[...]
        x = self.ln_pre(x + pos.astype(x.dtype))
        x = self.transformer(x)
        if self.cfg.pool == "tok":
            pooled = self.ln_post(x[:, 0])
        elif self.cfg.pool == "gap":
            pooled = self.ln_post(x.mean(axis=1))
        else:
            pooled = self.attn_pool(self.ln_post(x))
        return pooled @ self.proj[...].astype(pooled.dtype)


class TextTransformer(nnx.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int, quick_gelu: bool, *, rngs: nnx.Rngs, dtype):
        self.cfg = cfg
        w = cfg.width
        self.token_embedding = nnx.Embed(
            cfg.vocab_size,
            w,
            embedding_init=nnx.with_partitioning(nnx.initializers.normal(0.02), (None, "fsdp")),
            dtype=dtype,
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.positional_embedding = _param(
            nnx.initializers.normal(0.01), (cfg.context_length, w), (None, "fsdp"), rngs
        )
        self.transformer = Transformer(
            w, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu, rngs=rngs, dtype=dtype
        )
        self.ln_final = _norm(w, dtype, rngs)
        self.text_projection = _param(nnx.initializers.normal(w**-0.5), (w, embed_dim), ("fsdp", None), rngs)

    def __call__(self, tokens):
        cfg = self.cfg
        x = self.token_embedding(tokens) + self.positional_embedding[...].astype(self.token_embedding.dtype)
        # bidirectional (SigLIP): every position attends to every other, padding included, as in
        # big_vision's SigLIP and open_clip's no_causal_mask, so exported towers stay the same network
        x = self.transformer(x, causal=cfg.causal)
        x = self.ln_final(x)
        if cfg.pool == "eot":
            at = jnp.argmax(tokens == cfg.eot_id, axis=-1)
        elif cfg.pool == "last":
            at = jnp.maximum(jnp.sum(tokens != cfg.pad_id, axis=-1) - 1, 0)
        else:
            raise ValueError(f"unknown text pooling {cfg.pool!r}: use eot or last")
        pooled = x[jnp.arange(x.shape[0]), at]
        return pooled @ self.text_projection[...].astype(pooled.dtype)


def _l2(x):
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class CLIP(nnx.Module):
    def __init__(self, cfg: CLIPConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dtype = jnp.dtype(cfg.dtype)
        self.visual = VisionTransformer(cfg.vision, cfg.embed_dim, cfg.quick_gelu, rngs=rngs, dtype=dtype)
        self.text = TextTransformer(cfg.text, cfg.embed_dim, cfg.quick_gelu, rngs=rngs, dtype=dtype)
        self.logit_scale = nnx.Param(jnp.asarray(cfg.init_logit_scale, jnp.float32))
        self.logit_bias = nnx.Param(jnp.asarray(cfg.init_logit_bias, jnp.float32))

    def encode_image(self, images):
        """Images (b, h, w, 3), normalised -> L2-normalised embeddings (b, embed_dim), float32."""
        return _l2(self.visual(images.astype(jnp.dtype(self.cfg.dtype))))

    def encode_text(self, tokens):
        """Token ids (b, context_length) -> L2-normalised embeddings (b, embed_dim), float32."""
        return _l2(self.text(tokens))

    def __call__(self, images, tokens):
        return self.encode_image(images), self.encode_text(tokens)


def count_params(model: nnx.Module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
