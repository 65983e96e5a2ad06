"""The REER search as a state machine per item.

Each `ItemSearch` says what it needs next (one generation request, or a batch of scorings),
takes the results, and emits records (revisions, an outcome). `tasks/driver.py` feeds the
needs of many items to the models and hands every record to a sink before the item's next need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from reer.ids import stable_id
from reer.models.base import Generation, GenerationRequest, ScoreRequest
from reer.settings import SearchConfig
from reer.tasks.prompts import (
    REFINE_CLOSE,
    REFINE_OPEN,
    initial_messages,
    kept_opening,
    parse_refined,
    pick_opener,
    refine_messages,
)
from reer.tasks.records import OutcomeRecord, RevisionRecord
from reer.tasks.scoring import ReferenceSplit, Score, score_logprobs, scoring_context
from reer.tasks.segments import join_segments, segment


@dataclass(frozen=True)
class SearchItem:
    """One (query, reference) pair to search a trajectory for."""

    trajectory_id: str
    example_id: str
    query: str
    reference: ReferenceSplit
    full_reference: str
    language: str
    seed: int


@dataclass
class GenerationNeed:
    request: GenerationRequest


@dataclass
class ScoringNeed:
    requests: list[ScoreRequest]


@dataclass
class VerifyNeed:
    """Sequences the verifier (the scorer's model in float32) re-scores before an acceptance is decided."""

    requests: list[ScoreRequest]


Record = RevisionRecord | OutcomeRecord


@dataclass
class ItemSearch:
    """The search for one item: initial -> score -> (refine -> score candidates)* -> done."""

    item: SearchItem
    config: SearchConfig
    query_prompt: str  # the scorer's chat-templated user turn holding x
    count_tokens: Callable[[str], int]
    # True when the scorer's dtype is not float32: acceptances then wait for the verifier's scores.
    # False when the scorer is exact, and is its own verifier at no cost.
    verifying: bool = False
    need: GenerationNeed | ScoringNeed | VerifyNeed | None = None
    done: bool = False
    segments: list[str] = field(default_factory=list)
    original: list[str] = field(default_factory=list)
    best: RevisionRecord | None = None
    initial_score: float | None = None
    initial_verified: float | None = None
    step: int = 0
    accepted_edits: int = 0
    _candidates: list[RevisionRecord] = field(default_factory=list)
    _copies: list[tuple[RevisionRecord, RevisionRecord]] = field(default_factory=list)  # (duplicate, the one scored)
    _winner: RevisionRecord | None = None  # the step's lowest candidate, waiting for its verification
    _held: list[RevisionRecord] = field(default_factory=list)  # set-aside candidates, emitted with their step
    _opener: str = ""
    _opening: str = ""
    _attempt: int = 0  # z(0) samples drawn before the current one (each rejected)
    _drawn: tuple[int, int] = (0, 0)  # (step, rewrites sampled for it so far): resamples continue the numbering
    _segment_index: int = 0  # the segment the current step rewrites
    _order: list[int] | None = None  # the segments in the order each pass refines them; None until known
    _ablating: bool = False  # waiting for the scores of z(0) with each segment left out (order "impact")
    _accepted_steps: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        item, cfg = self.item, self.config
        self._opener = pick_opener(item.language, item.seed)
        self.need = GenerationNeed(
            GenerationRequest(
                messages=initial_messages(item.query, item.full_reference, item.language),
                prefill="<think>\n" + self._opener,
                n=1,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                repetition_penalty=cfg.repetition_penalty,
                max_new_tokens=cfg.max_initial_tokens,
                seed=int(stable_id(item.seed, "initial"), 16),
                stop=("</think>",),
                min_new_tokens=cfg.min_thinking_tokens,  # no end of thinking before the shortest z(0) kept
                max_repeated_tokens=cfg.max_repeated_tokens,
            )
        )

    # -- ids and scoring requests -----------------------------------------------------
    def _revision_id(self, kind: str, step: int, candidate: int | None) -> str:
        # No run id in it: a resumed search re-derives the ids an uninterrupted one would have.
        return stable_id(self.item.trajectory_id, kind, step, candidate)

    def _score_request(self, thinking: str) -> ScoreRequest:
        context = scoring_context(self.query_prompt, thinking, self.item.reference)
        return ScoreRequest(context=context, target=self.item.reference.target)

    def _apply(self, record: RevisionRecord, logprobs: Sequence[float]) -> Score:
        s = score_logprobs(logprobs, self.config.clip_min)
        record.score, record.nll, record.ppl, record.scored_tokens = s.score, s.nll, s.ppl, s.tokens
        record.status = "scored"
        return s

    # -- transitions ---------------------------------------------------------------------
    def on_generated(self, generations: list[Generation]) -> list[Record]:
        if self.best is None:
            return self._on_initial(generations[0])
        return self._on_candidates(generations)

    def on_scored(self, logprobs: list[list[float]]) -> list[Record]:
        if self.best is None:
            return self._on_initial_scored(logprobs[0])
        if self._ablating:
            return self._on_ablations_scored(logprobs)
        return self._on_candidates_scored(logprobs)

    def on_verified(self, logprobs: list[list[float]]) -> list[Record]:
        """The verifier's log-probabilities for the requests of the VerifyNeed, in order."""
        scores = [score_logprobs(lps, self.config.clip_min).score for lps in logprobs]
        if self.best is None:
            return self._on_initial_verified(scores[0])
        return self._on_winner_verified(*scores)

    def on_overflow(self, tokens: Sequence[int], window: int) -> list[Record]:
        """Refuse the requests of the current need that exceed `window`; `tokens` is each request's size.

        A generation that cannot fit ends the search, and so does z(0)'s scoring or verification.
        A candidate whose scoring cannot fit is kept unscored with its step, and the step goes on
        with the rest; a winner whose verification cannot fit is refused.
        """
        if isinstance(self.need, GenerationNeed):
            return self._on_generation_overflow(tokens[0], window)
        if isinstance(self.need, VerifyNeed):
            return self._on_verify_overflow(tokens, window)
        if self.best is None:
            record = self._candidates.pop()
            record.note = f"scoring z(0) needs {tokens[0]} tokens; the scorer reads {window}"
            return [record, self._finish("rejected", "context_overflow")]
        if self._ablating:  # shorter than z(0), which fit; should one not, the pass runs in order
            self._ablating, self._order = False, list(range(len(self.segments)))
            return self._advance()
        return self._on_candidates_overflow(tokens, window)

    def _on_initial(self, g: Generation) -> list[Record]:
        thinking = (self._opener + g.text).strip()
        trimmed = g.finish_reason == "length" and self.config.on_unfinished == "trim"
        if trimmed:  # keep only whole paragraphs: the cut one would end mid-thought
            head, sep, _ = thinking.rpartition("\n\n")
            thinking = head.strip() if sep else thinking
        record = RevisionRecord(
            revision_id=self._revision_id("initial", 0, self._attempt or None),
            trajectory_id=self.item.trajectory_id,
            parent_id=None,
            kind="initial",
            step=0,
            segment_index=None,
            candidate_index=None,
            segment_text=None,
            thinking=thinking,
            accepted=False,
            status="rejected",
            thinking_tokens=self.count_tokens(thinking),
            generated_tokens=g.tokens,
            finish_reason=g.finish_reason,
        )
        self.segments = segment(thinking, self.config.min_segment_chars)
        reason = None
        if trimmed:
            record.note = "z(0) hit the token limit; trimmed to its last complete paragraph"
        if g.finish_reason == "length" and not trimmed:
            reason = "unfinished_thinking", f"z(0) hit the {self.config.max_initial_tokens}-token limit before </think>"
        elif record.thinking_tokens < self.config.min_thinking_tokens:
            reason = "too_short", f"z(0) has {record.thinking_tokens} tokens, under {self.config.min_thinking_tokens}"
        elif len(self.segments) < 2:
            reason = "single_segment", "z(0) is a single segment: nothing to refine piece by piece"
        if reason:
            record.note = reason[1]
            if self._attempt < self.config.initial_retries:
                record.note += f"; sampled again with a new seed ({self._attempt + 1} of {self.config.initial_retries})"
                self._attempt += 1
                self.need = GenerationNeed(replace(self.need.request, seed=self._initial_seed()))
                return [record]
            return [record, self._finish("rejected", reason[0])]
        self.original = list(self.segments)
        self._candidates = [record]
        self.need = ScoringNeed([self._score_request(thinking)])
        return []

    def _initial_seed(self) -> int:
        """The seed of z(0) sample `_attempt`: the first keeps the seed it always had."""
        tag = ("initial", self._attempt) if self._attempt else ("initial",)
        return int(stable_id(self.item.seed, *tag), 16)

    def _refine_guards(self, index: int) -> dict:
        """What keeps a rewrite of segment `index` usable: no early end, no copy of the segment at length."""
        cfg = self.config
        return {
            "min_new_tokens": cfg.min_refine_tokens,
            "copy_source": self.segments[index] if cfg.max_copied_tokens else "",
            "max_copied_tokens": cfg.max_copied_tokens,
            "max_repeated_tokens": cfg.max_repeated_tokens,
        }

    def _on_initial_scored(self, logprobs: list[float]) -> list[Record]:
        record = self._candidates[0]
        s = self._apply(record, logprobs)
        if self.verifying:  # z(0)'s verified score is every later gain's baseline: computed once, now
            self.need = VerifyNeed([self._score_request(record.thinking)])
            return []
        return self._on_initial_verified(s.score)

    def _on_initial_verified(self, verified: float) -> list[Record]:
        record = self._candidates.pop()
        record.verified_score = verified
        record.accepted = True
        self.best, self.initial_score, self.initial_verified = record, record.score, verified
        return [record, *self._advance()]

    def _advance(self) -> list[Record]:
        """Move to the next segment (of this pass, or of the next one while passes gain), or finish."""
        cfg, item = self.config, self.item
        if self.best.score < cfg.tau:
            return [self._finish("completed", "below_tau")]
        if self._order is None:
            if cfg.order == "impact" and len(self.original) > 1:
                return self._ablate()
            self._order = list(range(len(self.segments)))
        per_pass = min(cfg.max_steps, len(self._order))
        if per_pass == 0 or self.step >= per_pass * cfg.passes:
            return [self._finish("completed", "pass_complete")]
        done_passes, position = divmod(self.step, per_pass)
        if position == 0 and done_passes > 0 and not self._gained_in_pass(done_passes - 1, per_pass):
            return [self._finish("completed", "converged")]
        index = self._order[position]
        self.step += 1
        self._segment_index = index
        opening = kept_opening(self.segments[index], item.language)
        self._opening = opening
        self.need = GenerationNeed(
            GenerationRequest(
                # The segments as they stand: in a first pass in order, those after `index` are still z(0)'s.
                messages=refine_messages(
                    item.query, item.full_reference, self.segments, index, self.segments, item.language
                ),
                prefill=REFINE_OPEN + opening,
                n=cfg.k,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                repetition_penalty=cfg.repetition_penalty,
                max_new_tokens=cfg.max_refine_tokens,
                seed=int(stable_id(item.seed, "refine", self.step), 16),
                # A rewrite is one paragraph: a blank line ends it as surely as the closing tag.
                stop=(REFINE_CLOSE, "\n\n"),
                **self._refine_guards(index),
            )
        )
        return []

    def _gained_in_pass(self, pass_index: int, per_pass: int) -> bool:
        return any(pass_index * per_pass < s <= (pass_index + 1) * per_pass for s in self._accepted_steps)

    def _ablate(self) -> list[Record]:
        """Score z(0) once without each of its segments: the order "impact" refines first what matters most."""
        self._ablating = True
        self.need = ScoringNeed(
            [
                self._score_request(join_segments(self.original[:j] + self.original[j + 1 :]))
                for j in range(len(self.original))
            ]
        )
        return []

    def _on_ablations_scored(self, logprobs: list[list[float]]) -> list[Record]:
        # Without a segment that matters the answer is harder to predict: the highest score comes first.
        # z(0)'s segments, not the current ones, so a resumed search orders them as the first run did.
        without = [score_logprobs(lps, self.config.clip_min).score for lps in logprobs]
        self._ablating = False
        self._order = sorted(range(len(without)), key=lambda j: (-without[j], j))
        return self._advance()

    def _on_candidates(self, generations: list[Generation]) -> list[Record]:
        index = self._segment_index
        records: list[Record] = []
        self._candidates, self._copies = [], []
        drawn = self._drawn[1] if self._drawn[0] == self.step else 0
        self._drawn = (self.step, drawn + len(generations))
        for c, g in enumerate(generations, start=drawn):
            text, why = parse_refined(self._opening, g.text, g.finish_reason)
            unchanged = text is not None and text.strip() == self.segments[index].strip()
            record = RevisionRecord(
                revision_id=self._revision_id("candidate", self.step, c),
                trajectory_id=self.item.trajectory_id,
                parent_id=self.best.revision_id,
                kind="candidate",
                step=self.step,
                segment_index=index,
                candidate_index=c,
                segment_text=text if text is not None else g.text,
                thinking=join_segments(self.segments[:index] + [text] + self.segments[index + 1 :])
                if text
                else self.best.thinking,
                accepted=False,
                status="unparsable" if text is None else "unchanged" if unchanged else "pending",
                note=why if text is None else "the rewrite repeats the segment word for word" if unchanged else None,
                generated_tokens=g.tokens,
                finish_reason=g.finish_reason,
            )
            same = next((r for r in self._candidates if r.thinking == record.thinking), None)
            if text is None or unchanged:
                # Kept with its reason, never silently skipped. A repeat is not scored: it is the
                # current thinking, and a score a rounding error below the current one would "win".
                self._held.append(record)
            elif same is not None:  # one text, one score: a second scoring would only add its noise
                record.thinking_tokens = same.thinking_tokens
                self._copies.append((record, same))
            else:
                record.thinking_tokens = self.count_tokens(record.thinking)
                self._candidates.append(record)
        if not self._candidates:
            if self._drawn[1] < self.config.k * (1 + self.config.refine_retries):
                # None usable: the step is sampled again with a new seed; what was unusable stays held
                # with its reason and is stored with the step.
                retry = self._drawn[1] // self.config.k
                seed = int(stable_id(self.item.seed, "refine", self.step, retry), 16)
                self.need = GenerationNeed(replace(self.need.request, seed=seed))
                return records
            return self._release() + self._advance()
        self.need = ScoringNeed([self._score_request(r.thinking) for r in self._candidates])
        return records

    def _on_generation_overflow(self, tokens: int, window: int) -> list[Record]:
        request = self.need.request
        what = "z(0)" if self.best is None else f"the rewrite of segment {self.step}"
        note = (
            f"{what} needs {tokens} tokens (its prompt and {request.max_new_tokens} new ones); "
            f"the generator reads {window}"
        )
        if self.best is not None:
            self.step -= 1  # the step never ran: the outcome counts the steps done
        return [self._finish("rejected", "context_overflow", note)]

    def _on_candidates_overflow(self, tokens: Sequence[int], window: int) -> list[Record]:
        fitting: list[RevisionRecord] = []
        requests: list[ScoreRequest] = []
        for record, request, n in zip(self._candidates, self.need.requests, tokens):
            if n <= window:
                fitting.append(record)
                requests.append(request)
                continue
            record.status = "context_overflow"
            record.note = f"scoring this rewrite needs {n} tokens; the scorer reads {window}"
            self._held.append(record)
        self._candidates = fitting
        if not fitting:
            return self._end_step()
        self.need = ScoringNeed(requests)
        return []

    def _on_verify_overflow(self, tokens: Sequence[int], window: int) -> list[Record]:
        note = f"verifying needs {max(tokens)} tokens; the verifier reads {window}"
        if self.best is None:
            record = self._candidates.pop()
            record.note = "z(0): " + note
            return [record, self._finish("rejected", "context_overflow")]
        self._winner.note = f"not accepted: {note}"
        return self._end_step()

    def _release(self) -> list[Record]:
        """A step's records leave together, so a stored step is always a whole step."""
        held, self._held = self._held, []
        return list(held)

    def _settle_copies(self) -> list[RevisionRecord]:
        """Each duplicate takes the outcome of the candidate it repeats: scored once, stored twice."""
        for copy, same in self._copies:
            copy.status, copy.score, copy.nll, copy.ppl = same.status, same.score, same.nll, same.ppl
            copy.scored_tokens = same.scored_tokens
            copy.note = f"the same text as candidate {same.candidate_index}" + (
                ": scored once, with it" if same.status == "scored" else f"; {same.note}"
            )
        copies, self._copies = [copy for copy, _ in self._copies], []
        return copies

    def _on_candidates_scored(self, logprobs: list[list[float]]) -> list[Record]:
        for record, lps in zip(self._candidates, logprobs):
            self._apply(record, lps)
        winner = min(self._candidates, key=lambda r: r.score)
        if winner.score >= self.best.score:  # no gain in the scorer's dtype: nothing to verify
            return self._end_step()
        self._winner = winner
        if not self.verifying:  # the scorer is exact: its scores are the verified ones
            return self._on_winner_verified(winner.score)
        requests = [self._score_request(winner.thinking)]
        if self.best.verified_score is None:  # an incumbent stored unverified: verified beside the winner
            requests.append(self._score_request(self.best.thinking))
        self.need = VerifyNeed(requests)
        return []

    def _on_winner_verified(self, verified: float, incumbent_verified: float | None = None) -> list[Record]:
        """Accept the winner only when its verified gain over the incumbent exceeds the float32 noise."""
        winner, best = self._winner, self.best
        if incumbent_verified is not None:  # an incumbent stored unverified, verified now beside the winner
            best.verified_score = incumbent_verified
        winner.verified_score = verified
        baseline = best.score if best.verified_score is None else best.verified_score  # None: an exact scorer's
        gain, verified_gain = best.score - winner.score, baseline - verified
        if verified_gain > self.config.accept_margin:
            winner.accepted = True
            self.segments[winner.segment_index] = winner.segment_text
            self.best = winner
            self.accepted_edits += 1
            self._accepted_steps.append(winner.step)
        else:
            winner.note = (
                f"not accepted: {gain:.6f} below the best in the scorer's dtype, {verified_gain:.6f} in float32, "
                f"not above the {self.config.accept_margin:g} margin"
            )
        return self._end_step()

    def _end_step(self) -> list[Record]:
        """The step's records, every candidate and set-aside one together, then the next step."""
        records: list[Record] = self._release() + list(self._candidates) + self._settle_copies()
        self._candidates, self._winner = [], None
        return records + self._advance()

    @classmethod
    def resume(
        cls, item, config, query_prompt, count_tokens, stored: Sequence[RevisionRecord], verifying: bool = False
    ) -> tuple[ItemSearch, list[Record]]:
        """Rebuild a search from its stored revisions and continue after its last stored step.

        Each step is stored whole, in one transaction, so replaying the accepted candidates
        of every stored step gives exactly the state the interrupted run had. Returns the
        search and the records of its next transition when that needs no model (a finish).
        """
        search = cls(item, config, query_prompt, count_tokens, verifying)
        initial = next((r for r in stored if r.kind == "initial" and r.status == "scored"), None)
        if initial is None:  # nothing scored yet: start from z(0), after the samples already rejected
            search._attempt = sum(1 for r in stored if r.kind == "initial")
            if search._attempt:
                search.need = GenerationNeed(replace(search.need.request, seed=search._initial_seed()))
            return search, []
        search.segments = segment(initial.thinking, config.min_segment_chars)
        search.original = list(search.segments)
        search.best, search.initial_score, search.initial_verified = initial, initial.score, initial.verified_score
        for r in sorted((r for r in stored if r.kind == "candidate" and r.accepted), key=lambda r: r.step):
            search.segments[r.segment_index] = r.segment_text
            search.best = r
            search.accepted_edits += 1
            search._accepted_steps.append(r.step)
        search.step = max(r.step for r in stored)
        return search, search._advance()

    def _finish(self, status: str, reason: str, note: str | None = None) -> OutcomeRecord:
        self.done, self.need = True, None
        return OutcomeRecord(
            trajectory_id=self.item.trajectory_id,
            status=status,
            reason=reason,
            final_revision_id=self.best.revision_id if self.best else None,
            initial_score=self.initial_score,
            final_score=self.best.score if self.best else None,
            initial_verified_score=self.initial_verified,
            final_verified_score=self.best.verified_score if self.best else None,
            steps=self.step,
            accepted_edits=self.accepted_edits,
            segments=len(self.segments),
            note=note,
        )
