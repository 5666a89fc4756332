"""The Zeta positional-embedding API (the seed documents) on the ropekit C++ core.

Names, arguments, defaults and return shapes are Zeta's; the project design notes ("Seed decisions") say where
upstream was fixed. ``apply_rotary_pos_emb`` here is the Sinusoidal one (q, k, freqs, scale=1); the
xPos-style one is ``ropekit.zeta.xpos.apply_rotary_pos_emb(x, sin, cos, scale=1)`` and Zeta's
RotaryEmbedding one ``ropekit.zeta.rope.apply_rotary_pos_emb(t, freqs, scale=1)``.
"""
from . import llama, rope, sinusoidal, truncated_rope, xpos, yarn  # noqa: F401
from .llama import apply_rotary_emb, precompute_freqs_cis, reshape_for_broadcast
from .rope import RotaryEmbedding
from .sinusoidal import SinusoidalEmbeddings, apply_rotary_pos_emb, rotate_half
from .truncated_rope import TruncatedRotaryEmbedding
from .xpos import XPOS, duplicate_interleave, fixed_pos_embedding, rotate_every_two
from .yarn import YarnEmbedding, find_correction_dim, find_correction_range, get_mscale, linear_ramp_mask

__all__ = [
    "TruncatedRotaryEmbedding", "SinusoidalEmbeddings", "rotate_half", "apply_rotary_pos_emb", "YarnEmbedding",
    "find_correction_dim", "find_correction_range", "linear_ramp_mask", "get_mscale", "XPOS", "fixed_pos_embedding",
    "rotate_every_two", "duplicate_interleave", "precompute_freqs_cis", "reshape_for_broadcast", "apply_rotary_emb",
    "RotaryEmbedding",
]
