"""A lean forward pass for Llama-architecture models on the CPU, with a preallocated KV cache.

transformers' generic forward spends most of a small model's decode step outside arithmetic:
per-layer module dispatch, a fresh 4-D mask per step, and a cache that grows by concatenation,
copying every past key and value at every step. This runner computes the same function from
the same weights with fewer, larger operations: q/k/v and gate/up projections fused into one
matrix product each, rotary tables looked up instead of recomputed, keys and values written in
place into one buffer per layer, and attention over grouped key/value heads without repeating
them. Results match the transformers forward (tests/models/test_llama_runner.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reer.models.batching import left_padded, similar_length_runs


def supports(model) -> bool:
    """Whether `model` is a plain Llama this runner computes exactly."""
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {"rope_type": "default"}
    return (
        getattr(cfg, "model_type", None) == "llama"
        and not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
        and getattr(cfg, "hidden_act", "silu") == "silu"
        and rope.get("rope_type", "default") == "default"
        and getattr(cfg, "pretraining_tp", 1) == 1
    )


@dataclass
class KVCache:
    """Keys and values of `rows` sequences in one buffer per layer; column c holds every row's c-th token."""

    keys: torch.Tensor  # [layers, rows, kv_heads, capacity, head_dim]
    values: torch.Tensor
    valid: torch.Tensor  # [rows, capacity]: False for padding columns and columns not yet written
    length: int = 0  # columns written so far

    def select(self, rows: torch.Tensor) -> KVCache:
        """Row j is a copy of row rows[j]: finished rows leave, or one prompt's cache serves its n samples."""
        n = self.length
        # zeros, not garbage: decoding reads the whole buffer, and 0 * NaN would leak through the mask
        keys = self.keys.new_zeros((self.keys.shape[0], len(rows), *self.keys.shape[2:]))
        values = torch.zeros_like(keys)
        keys[:, :, :, :n] = self.keys[:, rows, :, :n]
        values[:, :, :, :n] = self.values[:, rows, :, :n]
        return KVCache(keys, values, self.valid[rows], n)


class LlamaRunner:
    """The decoder of a transformers LlamaForCausalLM, run with fused weights and an in-place cache."""

    def __init__(self, model) -> None:
        cfg = model.config
        inner = model.model
        self.layers = cfg.num_hidden_layers
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.dtype = inner.embed_tokens.weight.dtype
        # Plain tensors (no autograd), shared with the model: the fused matrices are the only copies.
        self.embed = inner.embed_tokens.weight.detach()
        self.norm = inner.norm.weight.detach()
        self.attn_norm, self.mlp_norm, self.qkv, self.out, self.gate_up, self.down = [], [], [], [], [], []
        for layer in inner.layers:
            a, m = layer.self_attn, layer.mlp
            self.attn_norm.append(layer.input_layernorm.weight.detach())
            self.mlp_norm.append(layer.post_attention_layernorm.weight.detach())
            self.qkv.append(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach().contiguous())
            self.out.append(a.o_proj.weight.detach())
            self.gate_up.append(torch.cat([m.gate_proj.weight, m.up_proj.weight]).detach().contiguous())
            self.down.append(m.down_proj.weight.detach())
        self.split = [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim]
        self.intermediate = cfg.intermediate_size
        theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
        inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim))
        positions = torch.arange(cfg.max_position_embeddings, dtype=torch.float32)
        freqs = positions[:, None] * inv_freq[None, :]  # the product transformers computes, in float32
        angles = torch.cat([freqs, freqs], dim=-1)
        self.cos, self.sin = angles.cos().to(self.dtype), angles.sin().to(self.dtype)

    def new_cache(self, rows: int, capacity: int) -> KVCache:
        shape = (self.layers, rows, self.kv_heads, capacity, self.head_dim)
        return KVCache(
            torch.zeros(shape, dtype=self.dtype),
            torch.zeros(shape, dtype=self.dtype),
            torch.zeros((rows, capacity), dtype=torch.bool),
        )

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # as LlamaRMSNorm: statistics in float32, scaled in the model's dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _attend(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Attention of q [rows, heads, t, d] over grouped keys/values [rows, kv_heads, n, d]; [rows, t, heads*d].

        The query heads that share a key/value head are stacked as extra query rows of it, so keys
        and values are read once per group and never repeated (faster than SDPA's enable_gqa on a
        CPU; bench/NOTES.md, "Attention").
        """
        rows, _, t, d = q.shape
        if mask is None:  # a whole sequence from its first token: plain causal attention, SDPA's fastest path
            out = F.scaled_dot_product_attention(q, keys, values, is_causal=True, enable_gqa=True)
            return out.transpose(1, 2).reshape(rows, t, self.heads * d)
        group = self.heads // self.kv_heads
        stacked = q.reshape(rows, self.kv_heads, group * t, d)  # heads are kv-major: head h uses kv head h // group
        if t == 1:
            # Decoding: two plain matrix products and a float32 softmax beat SDPA's kernel at these
            # sizes (one query row per head), and the scores are small: [rows, kv_heads, group, n].
            # keys @ q^T reads the cache as it lies; q @ keys^T would copy it first (bench/NOTES.md).
            scores = torch.matmul(keys, stacked.transpose(-1, -2)).transpose(-1, -2).float().mul_(d**-0.5)
            weights = torch.softmax(scores.masked_fill_(~mask, float("-inf")), dim=-1).to(values.dtype)
            out = torch.matmul(weights, values)
        else:
            out = F.scaled_dot_product_attention(stacked, keys, values, attn_mask=mask.repeat(1, 1, group, 1))
        return out.view(rows, self.heads, t, d).transpose(1, 2).reshape(rows, t, self.heads * d)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, positions: torch.Tensor, cache: KVCache, valid: torch.Tensor) -> torch.Tensor:
        """Run `ids` [rows, t] at `positions` [rows, t], appending them to `cache`; the final hidden states.

        `valid` [rows, t] is False where a column is padding: nothing attends to it.
        """
        rows, t = ids.shape
        start, end = cache.length, cache.length + t
        cache.valid[:, start:end] = valid
        cache.length = end
        if t == 1:
            # Decoding reads the whole buffer, unwritten columns masked: a slice of it would be copied
            # by bmm. A decoding row always sees itself.
            span = cache.keys.shape[3]
            mask = cache.valid[:, None, None, :]  # [rows, 1, 1, capacity]
        else:
            span = end
            mask = None if start == 0 and bool(valid.all()) else self._mask(cache, start, end, t)
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]  # [rows, 1, t, head_dim]
        x = F.embedding(ids, self.embed)
        for layer in range(self.layers):
            h = self._rms(x, self.attn_norm[layer])
            q, k, v = F.linear(h, self.qkv[layer]).split(self.split, dim=-1)
            q = self._rotate(q.view(rows, t, self.heads, self.head_dim).transpose(1, 2), cos, sin)
            k = self._rotate(k.view(rows, t, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
            cache.keys[layer, :, :, start:end] = k
            cache.values[layer, :, :, start:end] = v.view(rows, t, self.kv_heads, self.head_dim).transpose(1, 2)
            attended = self._attend(q, cache.keys[layer, :, :, :span], cache.values[layer, :, :, :span], mask)
            x = x + F.linear(attended, self.out[layer])
            gate, up = F.linear(self._rms(x, self.mlp_norm[layer]), self.gate_up[layer]).split(
                self.intermediate, dim=-1
            )
            x = x + F.linear(F.silu(gate) * up, self.down[layer])
        return self._rms(x, self.norm)

    @staticmethod
    def _mask(cache: KVCache, start: int, end: int, t: int) -> torch.Tensor:
        """Which columns each of t > 1 new tokens may attend to: [rows, 1, t, end]."""
        causal = torch.ones((t, end), dtype=torch.bool).tril(diagonal=start)  # earlier columns, and itself
        allowed = cache.valid[:, None, :end] & causal
        # a padding query row attends to nothing; let it see itself so softmax stays finite
        return (allowed | (torch.arange(end)[None, None, :] == (start + torch.arange(t))[None, :, None]))[:, None]


class LlamaDecoder:
    """A batch of sequences growing through a LlamaRunner: extend them, or take some of their rows."""

    def __init__(self, runner: LlamaRunner, rows: int, capacity: int, cache: KVCache | None = None) -> None:
        self.runner, self.capacity = runner, capacity
        self.cache = cache if cache is not None else runner.new_cache(rows, capacity)

    def prefill(self, prompts: list[list[int]]) -> torch.Tensor:
        """Start every row with its prompt, right-aligned; the final hidden state of each [rows, hidden].

        Rows of similar length run together, left-padded to their run's longest; a run without
        padding takes plain causal attention, SDPA's fastest path. Each run writes straight
        into its rows' columns of the batch cache, so prompts of mixed lengths cost about
        their real tokens, and short ones still share a pass.
        """
        width = max(map(len, prompts))
        last = []
        for run in similar_length_runs([len(p) for p in prompts]):
            ids, valid, positions = left_padded(prompts[run.start : run.stop], pad_id=0)  # padding is never attended
            lead, rows = width - ids.shape[1], slice(run.start, run.stop)
            view = KVCache(
                self.cache.keys[:, rows, :, lead:], self.cache.values[:, rows, :, lead:], self.cache.valid[rows, lead:]
            )
            last.append(self.runner.forward(ids, positions, view, valid)[:, -1])
        self.cache.length = width
        return torch.cat(last)

    def extend(self, ids: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Append `ids` [rows, t] (False in `valid` where padding) at `positions`; their final hidden states."""
        return self.runner.forward(ids, positions, self.cache, valid)

    def take(self, rows: torch.Tensor) -> LlamaDecoder:
        """A decoder whose row j continues row rows[j] of this one (this one is left as it is)."""
        return LlamaDecoder(self.runner, len(rows), self.capacity, self.cache.select(rows))
