"""transformers on the CPU: the embedded default backend.

Scoring runs shared prefixes once (KV cache) and only the tokens after them per candidate;
the language-model head runs only at positions whose next token is scored. Generation is
a batched sampling loop with one random generator per sequence, so a request's samples
depend on its seed alone, not on what else shares its batch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from reer.models.base import Feeding, Generation, GenerationRequest, ModelStats, ScoreRequest
from reer.models.batching import chunk_by_budget, group_by_shared_prefix, left_padded
from reer.models.chat import ChatTokenizer
from reer.models.llama_runner import LlamaDecoder, LlamaRunner, supports
from reer.models.loading import model_fingerprint
from reer.settings import ModelSpec

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def row_seed(seed: int, sample: int) -> int:
    """A 63-bit seed for sample `sample` of a request seeded `seed`."""
    digest = hashlib.sha256(f"{seed}:{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def repetition_penalized(logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """Repetition penalty as in CTRL (and vLLM): shrink the logits of the tokens already seen."""
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


class TransformersModel(ChatTokenizer):
    """A causal LM loaded with transformers; implements the LanguageModel protocol."""

    def __init__(self, folder: Path, spec: ModelSpec, model_id: str) -> None:
        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.model_id = model_id
        self.fingerprint = model_fingerprint(folder)
        self.dtype = spec.dtype
        super().__init__(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[spec.dtype]).eval()
        self.context_window = int(self.model.config.max_position_embeddings)
        self.generation_batch_size = spec.generation_rows
        self.score_batch_tokens = spec.score_batch_tokens
        # The lean Llama forward where it computes this model exactly; else transformers' own.
        self.runner = LlamaRunner(self.model) if supports(self.model) else None
        self.eos_ids = self._eos_ids()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.stats = ModelStats()

    # One batched call at a time over every model in this process: on a CPU a call already takes every
    # core, so a second model's call beside it would only slow both (README "Keeping models busy").
    feeding = Feeding(calls=1, per_item=False, engine="torch")

    # -- text helpers ---------------------------------------------------------------
    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return sorted({i for i in ids if i is not None})

    # -- scoring ----------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        started = time.perf_counter()
        encoded = [self.score_prompt(r) for r in requests]
        contexts = [ids[:start] for ids, start in encoded]
        targets = [ids[start:] for ids, start in encoded]
        results: list[list[float]] = [[] for _ in requests]
        for group in group_by_shared_prefix(contexts):
            self._score_group(group.prefix_len, group.members, contexts, targets, results)
        self.stats.scoring_calls += 1
        self.stats.scored_tokens += sum(len(t) for t in targets)
        self.stats.scoring_seconds += time.perf_counter() - started
        return results

    def _score_group(self, prefix_len, members, contexts, targets, results) -> None:
        suffixes = [contexts[m][prefix_len:] + targets[m] for m in members]
        # The shared prefix runs once; each chunk of suffixes continues a copy of its state.
        prefix = self._decoder(1, prefix_len + max(map(len, suffixes)))
        prefix_last = None
        if prefix_len:
            ids = torch.tensor([contexts[members[0]][:prefix_len]])
            prefix_last = prefix.extend(ids, torch.ones_like(ids, dtype=torch.bool), torch.arange(prefix_len)[None])[
                0, -1
            ]
            self.stats.computed_tokens += prefix_len
        for chunk in chunk_by_budget([len(s) for s in suffixes], self.score_batch_tokens):
            rows = [members[c] for c in chunk]
            width = max(len(suffixes[c]) for c in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            valid = torch.zeros((len(chunk), width), dtype=torch.bool)
            for r, c in enumerate(chunk):  # right padding: a suffix's own tokens never see it
                ids[r, : len(suffixes[c])] = torch.tensor(suffixes[c])
                valid[r, : len(suffixes[c])] = True
            positions = torch.arange(prefix_len, prefix_len + width).expand(len(chunk), -1)
            hidden = prefix.take(torch.zeros(len(chunk), dtype=torch.long)).extend(ids, valid, positions)
            self.stats.computed_tokens += int(valid.sum())
            self._read_scores(hidden, prefix_len, prefix_last, rows, contexts, targets, results)

    def _read_scores(self, hidden, prefix_len, prefix_last, rows, contexts, targets, results) -> None:
        """Log-probabilities of the target tokens; the LM head runs only at the positions that predict them."""
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
        prompts = [self.generation_prompt(r) for r in requests]
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

    def _decoder(self, rows: int, capacity: int):
        """An empty batch of `rows` sequences of up to `capacity` tokens, on the lean forward where it applies."""
        if self.runner is not None:
            return LlamaDecoder(self.runner, rows, capacity)
        return GenericDecoder(self.model)

    @torch.inference_mode()
    def _sample(self, chunk, samples, requests, prompts) -> list[Generation]:
        """Prefill each distinct prompt once, copy its cache to its n sample rows, then decode."""
        mine = [prompts[i] for i in chunk]
        decoder = self._decoder(len(chunk), max(map(len, mine)) + max(requests[i].max_new_tokens for i in chunk))
        logits = self.model.lm_head(decoder.prefill(mine))
        positions = torch.tensor([len(p) - 1 for p in mine])
        self.stats.computed_tokens += sum(map(len, mine))
        # One row per sample: row j copies the prefilled state of its request.
        expand = torch.tensor([chunk.index(i) for i, _ in samples])
        decoder = decoder.take(expand)
        logits, positions = logits[expand], positions[expand]

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
                # The penalty is for content: the chat template puts EOS in every prompt and the
                # instructions name the stop string, and penalizing those keeps a sample from ending.
                seen[r, self._ending_tokens(reqs[r].stop)] = False
        produced: list[list[int]] = [[] for _ in range(b)]
        finish: list[str | None] = [None] * b
        guards = [self._guard(req, prompts[i]) for req, (i, _) in zip(reqs, samples)]
        rows = list(range(b))  # the sample each batch row belongs to; None once it finished
        while True:
            live = [pos for pos, r in enumerate(rows) if r is not None]
            if len(live) < len(rows) and (len(rows) - len(live)) * 4 >= len(rows):
                # Compact once a quarter of the rows finished: copying the cache costs about a step.
                index = torch.tensor(live)
                decoder = decoder.take(index)
                logits, positions, temperature, top_p = (
                    logits[index],
                    positions[index],
                    temperature[index],
                    top_p[index],
                )
                penalty, seen = penalty[index], seen[index]
                rows = [rows[pos] for pos in live]
                live = list(range(len(rows)))
            if not live:
                break
            at = torch.tensor(live)
            step_logits = logits[at].float()
            if penalize:
                step_logits = repetition_penalized(step_logits, seen[at], penalty[at])
            for j, pos in enumerate(live):
                banned = guards[rows[pos]].banned(produced[rows[pos]])
                if banned:
                    step_logits[j, banned] = float("-inf")
            chosen = self._choose(step_logits, temperature[at], top_p[at], [generators[rows[pos]] for pos in live])
            if penalize:
                seen[at, torch.tensor(chosen)] = True
            tokens = self._take_tokens(live, chosen, rows, produced, finish, reqs)
            self.stats.generated_tokens += len(live)
            if all(r is None for r in rows):
                break
            positions = positions + 1
            step = decoder.extend(tokens[:, None], torch.ones((len(rows), 1), dtype=torch.bool), positions[:, None])
            logits = self.model.lm_head(step[:, -1])
        return [self._finish(produced[r], finish[r] or "length", reqs[r].stop) for r in range(b)]

    def _guard(self, request: GenerationRequest, prompt: list[int]) -> SampleGuard:
        """What one sample of `request` may not draw, and until when (see SampleGuard)."""
        held = []
        if request.min_new_tokens > 0:
            held = self._ending_tokens(request.stop)
        grams: dict[tuple[int, ...], list[int]] = {}
        m = request.max_copied_tokens
        if m > 0 and request.copy_source:
            source = self.tokenizer.encode(request.copy_source, add_special_tokens=False)
            for j in range(len(source) - m):
                grams.setdefault(tuple(source[j : j + m]), []).append(source[j + m])
        return SampleGuard(
            request.min_new_tokens, held, m, grams, prompt[-m:] if m > 0 else [], request.max_repeated_tokens
        )

    def _ending_tokens(self, stops: tuple[str, ...]) -> list[int]:
        """EOS and every token that could start one of `stops`."""
        return sorted(set(self.eos_ids).union(*(self._stop_starts(s) for s in stops)))

    def _stop_starts(self, stop: str) -> set[int]:
        """Every token whose text holds `stop` or ends with a beginning of it: a stop string starts with one."""
        cache = self.__dict__.setdefault("_stop_start_cache", {})
        if stop not in cache:
            texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
            beginnings = [stop[:n] for n in range(1, len(stop))]
            cache[stop] = {
                i for i, t in enumerate(texts) if t and (stop in t or any(t.endswith(b) for b in beginnings))
            }
        return cache[stop]

    def _take_tokens(self, live, chosen, rows, produced, finish, reqs) -> torch.Tensor:
        """Append each live row's chosen token to its sample, end the samples that finished; the step's input ids."""
        tokens = torch.full((len(rows),), self.pad_id, dtype=torch.long)
        for pos, token in zip(live, chosen):
            r = rows[pos]
            tokens[pos] = token
            if token in self.eos_ids:
                finish[r] = "eos"
                rows[pos] = None
                continue
            produced[r].append(token)
            if reqs[r].stop and self._hit_stop(produced[r], reqs[r].stop):
                finish[r] = "stop"
            elif len(produced[r]) >= reqs[r].max_new_tokens:
                finish[r] = "length"
            if finish[r]:
                rows[pos] = None
        return tokens

    @staticmethod
    def _choose(logits, temperature, top_p, generators, head: int = 256) -> list[int]:
        """Top-p sampling at each row's temperature, each row drawing from its own generator.

        The nucleus is found among the `head` most likely tokens when they already hold the
        top-p mass (nearly always): a partial top-k instead of sorting the whole vocabulary.
        A row where they do not is sorted in full, alone, so the result is exact either way.
        Each row draws one uniform number from its generator and inverts the nucleus's
        cumulative mass, all rows in one search.
        """
        greedy = (temperature <= 0)[:, 0]
        probs = torch.softmax(logits / temperature.clamp(min=1e-5), dim=-1)
        head_probs, head_order = probs.topk(min(head, probs.shape[-1]), dim=-1)
        # Mass before each token; the nucleus is every token whose preceding mass is under top_p.
        before = head_probs.cumsum(-1) - head_probs
        short = (before[:, -1:] + head_probs[:, -1:] < top_p)[:, 0] & ~greedy
        draws = torch.tensor([float(torch.rand(1, generator=g)) for g in generators], dtype=probs.dtype)
        # Inverse CDF over the nucleus: the first token whose cumulative mass exceeds u * nucleus mass.
        kept = head_probs.masked_fill(before >= top_p, 0.0)
        cumulative = kept.cumsum(-1)
        at = torch.searchsorted(cumulative, (draws * cumulative[:, -1])[:, None], right=True)[:, 0]
        picks = head_order.gather(1, at.clamp(max=head_order.shape[1] - 1)[:, None])[:, 0]
        picks = torch.where(greedy, head_order[:, 0], picks).tolist()
        for r in short.nonzero()[:, 0].tolist():  # a flat distribution: its nucleus is wider than the head
            row_probs, row_order = probs[r].sort(descending=True)
            row_kept = row_probs.masked_fill(row_probs.cumsum(-1) - row_probs >= top_p[r, 0], 0.0).cumsum(-1)
            index = int(torch.searchsorted(row_kept, draws[r] * row_kept[-1], right=True).clamp(max=len(row_kept) - 1))
            picks[r] = int(row_order[index])
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


class SampleGuard:
    """The tokens one sample may not draw next, given what it produced so far.

    Until `min_new` tokens are out, `held` (EOS and the tokens that could start a stop string)
    are masked, so the sample cannot end. After any `max_copied` tokens that repeat a run of the
    copy source (the pre-filled end of the prompt counts), the token that would extend the run
    is masked: no run longer than `max_copied` tokens of the source is reproduced. Likewise no run
    longer than `max_repeated` tokens of the sample's own output comes again (a loop).
    """

    def __init__(
        self,
        min_new: int,
        held: list[int],
        max_copied: int,
        grams: dict[tuple[int, ...], list[int]],
        tail: list[int],
        max_repeated: int = 0,
    ) -> None:
        self.min_new, self.held, self.max_copied, self.grams, self.tail = min_new, held, max_copied, grams, tail
        self.max_repeated = max_repeated
        self.own: dict[tuple[int, ...], set[int]] = {}  # the output's runs so far, and what followed each
        self.registered = 0

    def banned(self, produced: list[int]) -> list[int]:
        banned = list(self.held) if len(produced) < self.min_new else []
        if self.grams:
            m = self.max_copied
            recent = produced[-m:] if len(produced) >= m else (self.tail + produced)[-m:]
            banned.extend(self.grams.get(tuple(recent), ()))
        n = self.max_repeated
        if n > 0:
            while self.registered + n < len(produced):  # each run whose next token is known
                j = self.registered
                self.own.setdefault(tuple(produced[j : j + n]), set()).add(produced[j + n])
                self.registered += 1
            if len(produced) >= n:
                banned.extend(self.own.get(tuple(produced[-n:]), ()))
        return banned


class GenericDecoder:
    """A batch of sequences growing through transformers' own forward: any causal LM (the fallback)."""

    def __init__(self, model, cache: DynamicCache | None = None, mask: torch.Tensor | None = None) -> None:
        self.model = model
        self.cache = cache if cache is not None else DynamicCache()
        self.mask = mask

    def prefill(self, prompts: list[list[int]]) -> torch.Tensor:
        """Start every row with its prompt, left-padded to one width; the final hidden state of each."""
        ids, valid, positions = left_padded(prompts, self.model.config.pad_token_id or 0)
        return self.extend(ids, valid, positions)[:, -1]

    def extend(self, ids: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        self.mask = valid.long() if self.mask is None else torch.cat([self.mask, valid.long()], dim=1)
        return self.model.model(
            input_ids=ids, attention_mask=self.mask, position_ids=positions, past_key_values=self.cache, use_cache=True
        ).last_hidden_state

    def take(self, rows: torch.Tensor) -> GenericDecoder:
        cache = DynamicCache()
        for layer, entry in enumerate(self.cache.layers):
            cache.update(entry.keys[rows], entry.values[rows], layer)
        return GenericDecoder(self.model, cache, None if self.mask is None else self.mask[rows])
