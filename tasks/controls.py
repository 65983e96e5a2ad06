"""Controls for every completed trajectory: does the searched thinking z* explain the answer better than
no thinking, and better than another item's thinking?

Both controls are scored by the verifier (the scorer's model in float32) in one batched call per run.
The answer is scored exactly as the search scores it (tasks/scoring.py), with only the thinking
changed:

- no_thinking: an empty z, so the sequence reads `<think>\\n\\n</think>\\n<answer>\\n` before the
  answer: the same template with nothing between the tags, which is also the block Qwen3's chat
  template writes when thinking is switched off. No other text stands in for the thinking.
- other_thinking: the final thinking of another completed trajectory of the run. Sorted by
  trajectory_id, each trajectory reads the next one's, the last the first's (a fixed derangement:
  no trajectory reads its own). A run with one completed trajectory has no other thinking to read,
  and stores no such control.

Where an outcome lacks its float32 scores (an older store), z(0) and z* are scored again in the
same call, so every gain compares float32 with float32.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from prefect import task
from prefect.cache_policies import NO_CACHE

from reer.models.base import LanguageModel, ScoreRequest
from reer.settings import SearchConfig
from reer.sql import read_sql
from reer.tasks.scoring import ReferenceSplit, score_logprobs, scoring_context, split_reference

NO_THINKING, OTHER_THINKING, INITIAL, FINAL = "no_thinking", "other_thinking", "initial", "final"
CONTROLS = (NO_THINKING, OTHER_THINKING)  # the two controls; initial and final are float32 re-scores


class ControlsMismatch(ValueError):
    """The loaded scorer is not the model the run searched with: its controls would compare two models."""


@dataclass(frozen=True)
class ControlRequest:
    """One sequence to score for a trajectory: which kind, whose thinking, and the request itself."""

    trajectory_id: str
    kind: str
    request: ScoreRequest
    donor_trajectory_id: str | None = None


def derangement(trajectory_ids: Sequence[str]) -> dict[str, str]:
    """trajectory -> the trajectory whose thinking it reads: sorted, each takes the next, the last the first.

    Empty for fewer than two trajectories: nothing else to read.
    """
    ordered = sorted(set(trajectory_ids))
    if len(ordered) < 2:
        return {}
    return {t: ordered[(n + 1) % len(ordered)] for n, t in enumerate(ordered)}


def score_request(query_prompt: str, split: ReferenceSplit, thinking: str) -> ScoreRequest:
    """The answer's scored part after `thinking`, exactly as the search scores it."""
    return ScoreRequest(context=scoring_context(query_prompt, thinking, split), target=split.target)


def control_requests(
    rows: Sequence[dict], render_chat: Callable[[Sequence[tuple[str, str]]], str], min_segment_chars: int
) -> list[ControlRequest]:
    """Every sequence a run's controls need, from rows of queries/control_inputs.

    Per trajectory: z(0) and z* again where the outcome lacks their float32 scores, then the
    answer after no thinking, then after the next trajectory's final thinking.
    """
    finals = {r["trajectory_id"]: r["final_thinking"] for r in rows}
    donors = derangement(list(finals))
    requests = []
    for r in rows:
        split = split_reference(r["reference"], min_segment_chars)
        if split is None:  # a completed search had a scorable reference; an edited store may not
            continue
        prompt = render_chat([("user", r["query"])])
        tid = r["trajectory_id"]
        scoring = partial(score_request, prompt, split)
        if r["initial_verified_score"] is None and r["initial_thinking"] is not None:
            requests.append(ControlRequest(tid, INITIAL, scoring(r["initial_thinking"])))
        if r["final_verified_score"] is None:
            requests.append(ControlRequest(tid, FINAL, scoring(r["final_thinking"])))
        requests.append(ControlRequest(tid, NO_THINKING, scoring("")))
        if tid in donors:
            donor = donors[tid]
            requests.append(ControlRequest(tid, OTHER_THINKING, scoring(finals[donor]), donor))
    return requests


def control_row(request: ControlRequest, logprobs: Sequence[float] | None, clip_min: float, note: str | None) -> dict:
    """The `controls` row of one request: scored from its log-probabilities, or unscored with a note."""
    row = {
        "trajectory_id": request.trajectory_id,
        "kind": request.kind,
        "donor_trajectory_id": request.donor_trajectory_id,
        "note": note,
    }
    if logprobs is not None:
        s = score_logprobs(logprobs, clip_min)
        row.update(score=s.score, nll=s.nll, scored_tokens=s.tokens)
    return row


def run_search_config(query: Callable, run_id: str) -> SearchConfig:
    """The search settings the run ran with, as stored with it; a setting it predates takes today's default."""
    found = query("SELECT config -> 'search' AS search FROM runs WHERE run_id = $run_id", run_id=run_id)
    stored = found["search"][0] if found.height else None
    try:
        return SearchConfig(**json.loads(stored)) if stored else SearchConfig()
    except ValueError:  # settings of another version that this one cannot read: the figures still show
        return SearchConfig()


def run_margin(query: Callable, run_id: str) -> float:
    """The accept_margin the run searched with: the float32 noise a gain must exceed."""
    return run_search_config(query, run_id).accept_margin


def control_figures(query: Callable, run_id: str) -> list[dict]:
    """Per control (no_thinking, other_thinking): completed trajectories, those with it, mean gain, share beating it."""
    return query(read_sql("queries/control_summary"), run_id=run_id, margin=run_margin(query, run_id)).to_dicts()


@dataclass
class ControlsResult:
    """What computing a run's controls did, and the run's figures after it."""

    run_id: str
    trajectories: int
    sequences: int
    unscored: int  # sequences that did not fit the verifier's window: stored with a note, no score
    seconds: float
    margin: float
    dtype: str | None  # the verifier's; None: a served model's, which its server does not report
    figures: list[dict] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary a person reads: per control, the mean gain and the share of items beating it."""
        out = [
            f"controls of run {self.run_id}: {self.trajectories} completed trajectories, {self.sequences} sequences "
            f"scored in {self.dtype or 'the served dtype'} in {self.seconds:.1f} s"
            + (f" ({self.unscored} too long for the scorer's window, stored without a score)" if self.unscored else "")
        ]
        names = {
            NO_THINKING: "thinking gain over no thinking",
            OTHER_THINKING: "specificity over another item's thinking",
        }
        for f in self.figures:
            if not f["n"]:
                why = " (one completed trajectory: no other thinking to read)" if f["control"] == OTHER_THINKING else ""
                out.append(f"  {names[f['control']]}: no control{why}")
                continue
            out.append(
                f"  {names[f['control']]}: mean {f['mean_gain']:+.4f}, z* better by >= {self.margin:g} "
                f"in {f['beats']}/{f['n']} ({100 * (f['share'] or 0):.0f}%)"
            )
        return out


def compute(
    store,
    run_id: str,
    verifier: LanguageModel,
    config: SearchConfig | None = None,
    on_stage: Callable[[str], None] = lambda message: None,
) -> ControlsResult:
    """Score the controls of a run's completed trajectories in one call to `verifier`; replace its stored ones.

    The answer is split and clipped as the run's search did (`config`, default: the run's stored settings).
    """
    started = time.perf_counter()
    config = config or run_search_config(store.query, run_id)
    rows = store.query(read_sql("queries/control_inputs"), run_id=run_id).to_dicts()
    searched = {r["scorer_fingerprint"] for r in rows} - {None}  # NULL: stored before fingerprints, not known
    if searched - {verifier.fingerprint}:
        raise ControlsMismatch(
            f"run {run_id} was scored by model {', '.join(sorted(searched))}; the loaded scorer "
            f"{verifier.model_id} is {verifier.fingerprint}: load the run's scorer (--scorer or REER_SCORER_MODEL)"
        )
    requests = control_requests(rows, verifier.render_chat, config.min_segment_chars)
    window = verifier.context_window
    tokens = [verifier.request_tokens(r.request) for r in requests]
    fitting = [r for r, n in zip(requests, tokens) if n <= window]
    on_stage(
        f"scoring {len(fitting)} sequences for {len(rows)} completed trajectories of run {run_id} "
        f"({sum(n for n in tokens if n <= window)} tokens, one batched call)"
    )
    logprobs = iter(verifier.score([r.request for r in fitting]) if fitting else [])
    dtype, fingerprint = getattr(verifier, "dtype", None), verifier.fingerprint
    table = []
    for r, n in zip(requests, tokens):
        if n <= window:
            row = control_row(r, next(logprobs), config.clip_min, None)
        else:  # kept with its reason: a missing control must not look like one never tried
            row = control_row(r, None, config.clip_min, f"needs {n} tokens; the scorer reads {window}")
        table.append({**row, "run_id": run_id, "dtype": dtype, "scorer_fingerprint": fingerprint})
    replace_controls(store, run_id, table)
    margin = run_margin(store.query, run_id)
    return ControlsResult(
        run_id,
        len(rows),
        len(fitting),
        len(requests) - len(fitting),
        time.perf_counter() - started,
        margin,
        dtype,
        control_figures(store.query, run_id),
    )


def replace_controls(store, run_id: str, rows: list[dict]) -> None:
    """The run's controls are `rows` now: its earlier ones go in the same transaction, so none is counted twice."""
    from sqlalchemy import delete

    controls = store.tables["controls"]

    def swap_rows(con) -> None:
        con.execute(delete(controls).where(controls.c.run_id == run_id))
        store.append(con, "controls", rows)

    store.atomically(swap_rows)


@task(cache_policy=NO_CACHE)
def compute_controls(store, run_id: str, verifier: LanguageModel, config: SearchConfig) -> dict:
    """The synthesize flow's step: the run's controls, scored and stored before its validation reads them."""
    result = compute(store, run_id, verifier, config)
    return {"sequences": result.sequences, "unscored": result.unscored, "figures": result.figures}
