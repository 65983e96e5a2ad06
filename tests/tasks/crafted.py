"""Crafted examples and trajectories for the quality and export tests: two clean ones, and a store holding them."""

from __future__ import annotations

from pathlib import Path

from reer.store import Store

QUERY_A = "Write a short story about a lighthouse keeper on the last night before she retires."
ANSWER_A = (
    "The lamp turned as it always had, and Ines counted its sweeps the way other people count sheep.\n\n"
    "At midnight she climbed the iron stairs one final time, wiped the salt from the glass, and left her "
    "logbook open on the table for whoever came next."
)
THINKING_A = (
    "Okay, so the request is a quiet story about a keeper leaving her post. I want the reader to feel the "
    "weight of one ordinary night, so I will stay close to her hands and her habits.\n\n"
    "Hmm, maybe the ending turns on something she leaves behind for a stranger. Wait, that feels too tidy "
    "unless it is small, so a notebook left open should be enough to carry it."
)

QUERY_B = "Write a brief scene in which a night baker finds a note hidden inside a sack of flour."
ANSWER_B = (
    "Marco slit the sack at three in the morning and a folded square of paper slid out with the flour.\n\n"
    "It said only: thank you for the bread on Sundays. He pinned it above the ovens and kneaded until dawn."
)
THINKING_B = (
    "Alright, I need to write a small scene set in a bakery before dawn. The note has to feel like a gift "
    "from a customer he never meets, and the tone should stay warm rather than mysterious.\n\n"
    "Let me think about the last image. Perhaps he keeps the paper somewhere he sees it every shift, which "
    "closes the scene on gratitude instead of a twist."
)

CLEAN = {
    "a": dict(
        trajectory_id="traj-a",
        example_id="ex-a",
        query=QUERY_A,
        answer=ANSWER_A,
        thinking=THINKING_A,
        thinking_tokens=150,
        initial_score=0.9,
        final_score=0.7,
        steps=2,
        initial_finish_reason="stop",
    ),
    "b": dict(
        trajectory_id="traj-b",
        example_id="ex-b",
        query=QUERY_B,
        answer=ANSWER_B,
        thinking=THINKING_B,
        thinking_tokens=140,
        initial_score=0.8,
        final_score=0.6,
        steps=2,
        initial_finish_reason="eos",
    ),
}


# A third clean item: a haiku, for tests that need more than two trajectories.
THIRD = {
    **CLEAN["a"],
    "trajectory_id": "traj-c",
    "example_id": "ex-c",
    "query": "Write a haiku about the first frost on a garden gate, for a child to read aloud.",
    "answer": "White breath on the latch,\nthe gate creaks a little slower.\n\nThe frost has come in.",
    "thinking": "Okay, so the request is a haiku for a child. Hmm, maybe the gate itself should be the "
    "one who notices the cold.\n\nI keep the words small and let the last line arrive quietly, "
    "with the frost as a visitor rather than a threat.",
}


def fill_store(
    path: Path,
    rows: list[dict],
    run_id: str = "run-1",
    categories: dict[str, str] | None = None,
    initial_run: str | None = None,
) -> Store:
    """A store holding one run whose completed trajectories are `rows` (as in CLEAN).

    `initial_run` stores each z(0) under another run, as a resumed search leaves it.
    """
    store = Store(path)
    with store.transaction() as con:
        store.append(
            con,
            "runs",
            [
                {
                    "run_id": run_id,
                    "flow_name": "synthesize",
                    "generator_model": "gen",
                    "scorer_model": "scorer",
                    "backend": "transformers",
                    "dtype": "float32",
                    "prompt_version": "v1-test",
                    "code_version": "test",
                    "config_hash": "cfg",
                }
            ],
        )
        store.append(con, "run_events", [{"run_id": run_id, "status": "completed"}])
        for n, r in enumerate(rows):
            category = (categories or {}).get(r["example_id"])
            store.append(
                con,
                "examples",
                [
                    {
                        "example_id": r["example_id"],
                        "query": r["query"],
                        "reference": r["answer"],
                        "source": "crafted.jsonl",
                        "source_record": f"line {n + 1}",
                        "category": category,
                        "language": "en",
                        "run_id": run_id,
                    }
                ],
            )
            store.append(
                con,
                "trajectories",
                [
                    {
                        "trajectory_id": r["trajectory_id"],
                        "run_id": run_id,
                        "example_id": r["example_id"],
                        "prompt_version": "v1-test",
                        "language": "en",
                        "seed": n,
                    }
                ],
            )
            initial, final = f"{r['trajectory_id']}-r0", f"{r['trajectory_id']}-r1"
            store.append(
                con,
                "revisions",
                [
                    # Both rows carry the same keys: a multi-row insert takes its columns from the first row.
                    {
                        "revision_id": initial,
                        "trajectory_id": r["trajectory_id"],
                        "run_id": initial_run or run_id,
                        "parent_id": None,
                        "kind": "initial",
                        "step": 0,
                        "segment_index": None,
                        "candidate_index": None,
                        "thinking": r["thinking"] + " (draft)",
                        "accepted": True,
                        "status": "scored",
                        "score": r["initial_score"],
                        "nll": None,
                        "ppl": None,
                        "thinking_tokens": r["thinking_tokens"],
                        "finish_reason": r["initial_finish_reason"],
                    },
                    {
                        "revision_id": final,
                        "trajectory_id": r["trajectory_id"],
                        "run_id": run_id,
                        "parent_id": initial,
                        "kind": "candidate",
                        "step": 1,
                        "segment_index": 0,
                        "candidate_index": 0,
                        "thinking": r["thinking"],
                        "accepted": True,
                        "status": "scored",
                        "score": r["final_score"],
                        "nll": r["final_score"] + 0.5,
                        "ppl": 2.0,
                        "thinking_tokens": r["thinking_tokens"],
                        "finish_reason": "stop",
                    },
                ],
            )
            store.append(
                con,
                "outcomes",
                [
                    {
                        "trajectory_id": r["trajectory_id"],
                        "run_id": run_id,
                        "status": "completed",
                        "reason": "pass_complete",
                        "final_revision_id": final,
                        "initial_score": r["initial_score"],
                        "final_score": r["final_score"],
                        "steps": r["steps"],
                        "accepted_edits": 1,
                        "segments": 2,
                    }
                ],
            )
    return store
