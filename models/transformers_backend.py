"""transformers on the CPU: the embedded default backend.

Scoring runs shared prefixes once (KV cache) and only the tokens after them per candidate;
the language-model head runs only at positions whose next token is scored. Generation is
a batched sampling loop with one random generator per sequence, so a request's samples
depend on its seed alone, not on what else shares its batch.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from reer.models.base import Generation, GenerationRequest, ModelStats, ScoreRequest
from reer.models.batching import chunk_by_budget, group_by_shared_prefix

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def row_seed(seed: int, sample: int) -> int:
    """A 63-bit seed for sample `sample` of a request seeded `seed`."""
    digest = hashlib.sha256(f"{seed}:{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class TransformersModel:
    """A causal LM loaded with transformers; implements the LanguageModel protocol."""

    def __init__(
        self,
        folder: Path,
        *,
        model_id: str,
        dtype: str = "bfloat16",
        threads: int | None = None,
        generation_batch_size: int = 32,
        score_batch_tokens: int = 8192,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.model_id = model_id
        self.dtype = dtype
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype]).eval()
        self.context_window = int(self.model.config.max_position_embeddings)
        self.generation_batch_size = generation_batch_size
        self.score_batch_tokens = score_batch_tokens
        self.eos_ids = self._eos_ids()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.stats = ModelStats()

    # -- text helpers ---------------------------------------------------------------
    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return sorted({i for i in ids if i is not None})

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def render_chat(self, messages: Sequence[tuple[str, str]]) -> str:
        chat = [{"role": role, "content": content} for role, content in messages]
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    # -- scoring ----------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        started = time.perf_counter()
        contexts = [self.encode(r.context) for r in requests]
        targets = [self.encode(r.target) for r in requests]
        results: list[list[float]] = [[] for _ in requests]
        for group in group_by_shared_prefix(contexts):
            self._score_group(group.prefix_len, group.members, contexts, targets, results)
        self.stats.scoring_calls += 1
        self.stats.scored_tokens += sum(len(t) for t in targets)
        self.stats.scoring_seconds += time.perf_counter() - started
        return results

    def _score_group(self, prefix_len, members, contexts, targets, results) -> None:
        prefix_cache, prefix_last = None, None
        if prefix_len:
            ids = torch.tensor([contexts[members[0]][:prefix_len]])
            out = self.model.model(input_ids=ids, use_cache=True)
            prefix_cache, prefix_last = out.past_key_values, out.last_hidden_state[0, -1]
            self.stats.computed_tokens += prefix_len
        suffixes = [contexts[m][prefix_len:] + targets[m] for m in members]
        for chunk in chunk_by_budget([len(s) for s in suffixes], self.score_batch_tokens):
            rows = [members[c] for c in chunk]
            self._score_rows(prefix_len, prefix_cache, prefix_last, rows, [suffixes[c] for c in chunk], contexts, targets, results)

    def _score_rows(self, prefix_len, prefix_cache, prefix_last, rows, suffixes, contexts, targets, results) -> None:
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for r, suffix in enumerate(suffixes):
            ids[r, : len(suffix)] = torch.tensor(suffix)
            mask[r, prefix_len : prefix_len + len(suffix)] = 1
        positions = torch.arange(prefix_len, prefix_len + width).expand(len(rows), -1)
        cache = None
        if prefix_cache is not None:
            cache = DynamicCache()
            for layer, entry in enumerate(prefix_cache.layers):
                cache.update(entry.keys.expand(len(rows), -1, -1, -1), entry.values.expand(len(rows), -1, -1, -1), layer)
        hidden = self.model.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=cache is not None
        ).last_hidden_state
        self.stats.computed_tokens += sum(len(s) for s in suffixes)
        # The hidden state at sequence position p predicts token p+1: gather only those we score.
        vectors, owners, wanted = [], [], []
        for r, row in enumerate(rows):
            start = len(contexts[row]) - 1 - prefix_len  # suffix position predicting target[0]
            n = len(targets[row])
            if start < 0:  # the first target token is predicted by the prefix's last position
                vectors.append(prefix_last[None])
                vectors.append(hidden[r, : n - 1])
            else:
                vectors.append(hidden[r, start : start + n])
            owners.append((row, n))
            wanted.extend(targets[row])
        logits = self.model.lm_head(torch.cat(vectors)).float()
        logprobs = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(wanted)[:, None])[:, 0].tolist()
        offset = 0
        for row, n in owners:
            results[row] = logprobs[offset : offset + n]
            offset += n

    # -- generation -------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        started = time.perf_counter()
        prompts = [self.encode(self.render_chat(r.messages) + r.prefill) for r in requests]
        out: list[list[Generation]] = [[] for _ in requests]
        # Chunks of whole requests, at most `generation_batch_size` sampled rows each, similar lengths together.
        chunk: list[int] = []
        for i in sorted(range(len(requests)), key=lambda i: len(prompts[i])):
            if chunk and sum(requests[j].n for j in chunk) + requests[i].n > self.generation_batch_size:
                self._generate_chunk(chunk, requests, prompts, out)
                chunk = []
            chunk.append(i)
        if chunk:
            self._generate_chunk(chunk, requests, prompts, out)
        self.stats.generation_calls += 1
        self.stats.generation_seconds += time.perf_counter() - started
        return out

    def _generate_chunk(self, chunk: list[int], requests, prompts, out) -> None:
        samples = [(i, s) for i in chunk for s in range(requests[i].n)]
        for (i, _), generation in zip(samples, self._sample(chunk, samples, requests, prompts)):
            out[i].append(generation)

    def _sample(self, chunk, samples, requests, prompts) -> list[Generation]:
        """Prefill each distinct prompt once, copy its cache to its n sample rows, then decode."""
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, i in enumerate(chunk):  # left padding keeps every row's last token aligned
            ids[r, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[r, width - len(prompts[i]) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1
        ).logits[:, -1]
        self.stats.computed_tokens += int(mask.sum())
        # One row per sample: row j copies the prefilled state of its request.
        expand = torch.tensor([chunk.index(i) for i, _ in samples])
        cache.batch_select_indices(expand)
        logits, mask, positions = logits[expand], mask[expand], positions[expand]

        b = len(samples)
        reqs = [requests[i] for i, _ in samples]
        generators = [torch.Generator().manual_seed(row_seed(req.seed, s)) for req, (_, s) in zip(reqs, samples)]
        temperature = torch.tensor([[req.temperature] for req in reqs])
        top_p = torch.tensor([[req.top_p] for req in reqs])
        penalty = torch.tensor([[req.repetition_penalty] for req in reqs])
        penalize = bool((penalty != 1.0).any())
        seen = torch.zeros((b, logits.shape[-1] if penalize else 1), dtype=torch.bool)
        for r, (i, _) in enumerate(samples):
            if penalize:
                seen[r, prompts[i]] = True
        produced: list[list[int]] = [[] for _ in range(b)]
        finish: list[str | None] = [None] * b
        live = list(range(b))  # the sample each batch row belongs to
        while live:
            logits = logits.float()
            if penalize:  # repetition penalty as in CTRL (and vLLM): shrink the logits of tokens already seen
                logits = torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)
            chosen = self._choose(logits, temperature, top_p, [generators[r] for r in live])
            if penalize:
                seen[torch.arange(len(live)), torch.tensor(chosen)] = True
            keep = []
            for pos, r in enumerate(live):
                token = chosen[pos]
                if token in self.eos_ids:
                    finish[r] = "eos"
                    continue
                produced[r].append(token)
                if reqs[r].stop and self._hit_stop(produced[r], reqs[r].stop):
                    finish[r] = "stop"
                elif len(produced[r]) >= reqs[r].max_new_tokens:
                    finish[r] = "length"
                else:
                    keep.append(pos)
            self.stats.generated_tokens += len(live)
            if not keep:
                break
            if len(keep) < len(live):  # drop finished rows so they cost nothing more
                index = torch.tensor(keep)
                cache.batch_select_indices(index)
                mask, positions, temperature, top_p = mask[index], positions[index], temperature[index], top_p[index]
                penalty, seen = penalty[index], seen[index]
                chosen = [chosen[k] for k in keep]
                live = [live[k] for k in keep]
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=torch.long)], dim=1)
            positions = positions[:, -1:] + 1
            logits = self.model(
                input_ids=torch.tensor(chosen)[:, None],
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            ).logits[:, -1]
        return [self._finish(produced[r], finish[r] or "length", reqs[r].stop) for r in range(b)]

    @staticmethod
    def _choose(logits, temperature, top_p, generators, head: int = 256) -> list[int]:
        """Top-p sampling at each row's temperature, each row drawing from its own generator.

        The nucleus is found among the `head` most likely tokens when they already hold the
        top-p mass (nearly always): a partial top-k instead of sorting the whole vocabulary.
        Rows where they do not fall back to a full sort, so the result is exact either way.
        """
        greedy = (temperature <= 0)[:, 0]
        probs = torch.softmax(logits / temperature.clamp(min=1e-5), dim=-1)
        sorted_probs, order = probs.topk(min(head, probs.shape[-1]), dim=-1)
        if bool((sorted_probs.sum(-1, keepdim=True) < top_p).any()):
            sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest head of the distribution whose mass reaches top_p (always the top token).
        outside = (sorted_probs.cumsum(-1) - sorted_probs) >= top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        picks = []
        for r, generator in enumerate(generators):
            if greedy[r]:
                picks.append(int(order[r, 0]))
            else:
                picks.append(int(order[r, torch.multinomial(sorted_probs[r], 1, generator=generator)]))
        return picks

    def _hit_stop(self, produced: list[int], stops: tuple[str, ...]) -> bool:
        tail = self.tokenizer.decode(produced[-12:])
        return any(stop in tail for stop in stops)

    def _finish(self, produced: list[int], reason: str, stops: tuple[str, ...]) -> Generation:
        text = self.tokenizer.decode(produced, skip_special_tokens=True)
        if reason == "stop":
            cut = min((text.find(s) for s in stops if s in text), default=len(text))
            text = text[:cut]
        return Generation(text=text, finish_reason=reason, tokens=len(produced))  # type: ignore[arg-type]
