"""The text tower over many prompts that share their first tokens, computed once for the shared part.

CoOp prompts are `[SOS] ctx_1 .. ctx_n {class} . [EOS]`: every class's prompt starts with the same
1 + n positions. Under CLIP's causal mask a position's hidden state depends only on the positions
before it, so those P positions have the same hidden states in every prompt, at every layer. This
runs them once (one sequence of length P, not C) and lets each class's suffix attend to their keys
and values (a key/value prefix, as in a decoder's cache). In the last layer only the pooled (EOT)
position matters, so its query, attention output and MLP run for that one row per prompt.

The result equals the ordinary forward (`open_clip`'s `encode_text` on the same embeddings) in exact
arithmetic, and to float rounding in practice (tests check ≤ 1e-5 relative on features and on the
gradient w.r.t. the context). Towers this does not fit (no causal mask, custom attention blocks,
pooling at the first position or over all of them) are answered with `supports_shared_prefix` False
and keep the ordinary forward.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock


def supports_shared_prefix(model: torch.nn.Module) -> bool:
    """Whether `shared_prefix_text` reproduces this open_clip CLIP's text tower."""
    transformer = getattr(model, "transformer", None)
    mask = getattr(model, "attn_mask", None)
    if transformer is None or mask is None or getattr(model, "text_pool_type", "argmax") not in ("argmax", "eos", "last"):
        return False
    if not getattr(transformer, "batch_first", False) or getattr(transformer, "grad_checkpointing", False) or \
            not len(transformer.resblocks):
        return False
    causal = torch.full_like(mask, float("-inf")).triu_(1)
    if not torch.equal(mask, causal):
        return False
    for block in transformer.resblocks:
        attn = getattr(block, "attn", None)
        if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv") or \
                not isinstance(attn, torch.nn.MultiheadAttention) or not attn._qkv_same_embed_dim or \
                attn.bias_k is not None or attn.add_zero_attn or attn.in_proj_bias is None or attn.dropout:
            return False
    return True


def pool_positions(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The position each prompt is pooled at, as `open_clip.transformer.text_global_pool` picks it."""
    pool = getattr(model, "text_pool_type", "argmax")
    if pool == "argmax":
        return tokens.argmax(dim=-1)
    if pool == "eos":
        return (tokens == model.text_eos_id).int().argmax(dim=-1)
    return torch.full((tokens.shape[0],), tokens.shape[1] - 1, dtype=torch.long, device=tokens.device)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, width = x.shape
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, head_width = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_width)


def _project(block: ResidualAttentionBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    attn = block.attn
    heads = attn.num_heads
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    return _heads(q, heads), _heads(k, heads), _heads(v, heads)


def _finish(block: ResidualAttentionBlock, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    out = F.linear(_merge(attended), block.attn.out_proj.weight, block.attn.out_proj.bias)
    x = x + block.ls_1(out)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


@functools.lru_cache(maxsize=16)
def _suffix_sees(shared: int, suffix_length: int, device: torch.device) -> torch.Tensor:
    """[S, P + S] bool: suffix query i sees every prefix key and the suffix keys j <= i (built once
    per shape, not every training step)."""
    sees = torch.ones(suffix_length, shared + suffix_length, dtype=torch.bool, device=device)
    sees[:, shared:].tril_()
    return sees


def shared_prefix_text(model: torch.nn.Module, prefix: torch.Tensor, suffix: torch.Tensor,
                       pooled_at: torch.Tensor) -> torch.Tensor:
    """Pooled text features (after `ln_final` and the projection, not normalised) of N prompts
    `[prefix; suffix_n]`: `prefix` [P, D] is the embedding all prompts share, `suffix` [N, S, D] the
    rest of each, `pooled_at` [N] each prompt's pooled position in the whole sequence (≥ P)."""
    n_prompts, suffix_length, _ = suffix.shape
    shared = prefix.shape[0]
    positions = model.positional_embedding
    x_prefix = (prefix + positions[:shared]).unsqueeze(0)                        # [1, P, D]
    x_suffix = suffix + positions[shared:shared + suffix_length]                 # [N, S, D]
    rows = torch.arange(n_prompts, device=suffix.device)
    pooled = pooled_at - shared
    sees = _suffix_sees(shared, suffix_length, suffix.device)
    blocks = model.transformer.resblocks
    for index, block in enumerate(blocks):
        q_p, k_p, v_p = _project(block, x_prefix)
        q_s, k_s, v_s = _project(block, x_suffix)
        keys = torch.cat([k_p.expand(n_prompts, -1, -1, -1), k_s], dim=2)
        values = torch.cat([v_p.expand(n_prompts, -1, -1, -1), v_s], dim=2)
        if index < len(blocks) - 1:
            x_prefix = _finish(block, x_prefix, F.scaled_dot_product_attention(q_p, k_p, v_p, is_causal=True))
            x_suffix = _finish(block, x_suffix, F.scaled_dot_product_attention(q_s, keys, values, attn_mask=sees))
        else:  # the last layer: only the pooled row of each prompt is read
            query = q_s[rows, :, pooled].unsqueeze(2)                            # [N, H, 1, hd]
            attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=sees[pooled].unsqueeze(1).unsqueeze(1))
            x = _finish(block, x_suffix[rows, pooled].unsqueeze(1), attended)[:, 0]
    x = model.ln_final(x)
    projection = model.text_projection
    if projection is not None:
        x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
    return x
