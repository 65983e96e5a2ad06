import random

from reer.models.batching import chunk_by_budget, common_prefix_len, computed_tokens, group_by_shared_prefix


def test_common_prefix_len():
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([], [1]) == 0


def test_candidates_sharing_a_long_prefix_form_one_group():
    shared = list(range(100))
    contexts = [shared + [500, 501], shared + [600], [7, 8, 9]]
    groups = group_by_shared_prefix(contexts, min_shared=32)
    by_members = {g.members: g.prefix_len for g in groups}
    assert by_members[(0, 1)] == 100
    assert by_members[(2,)] == 0


def test_prefix_never_swallows_a_whole_context():
    shared = list(range(50))
    groups = group_by_shared_prefix([shared, shared + [1, 2]], min_shared=10)
    assert groups[0].prefix_len == 49  # every member keeps a token of its own


def test_short_shared_prefixes_are_not_grouped():
    groups = group_by_shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5]], min_shared=32)
    assert groups == [groups[0]] and groups[0].prefix_len == 0 and groups[0].members == (0, 1)


def test_every_request_lands_in_exactly_one_group():
    contexts = [[i % 3] * 40 + [i] for i in range(10)]
    members = sorted(m for g in group_by_shared_prefix(contexts, 32) for m in g.members)
    assert members == list(range(10))


def test_chunks_respect_the_token_budget_and_row_cap():
    lengths = [10, 200, 30, 190, 20]
    chunks = chunk_by_budget(lengths, budget=400)
    assert sorted(i for c in chunks for i in c) == [0, 1, 2, 3, 4]
    for chunk in chunks:
        assert max(lengths[i] for i in chunk) * len(chunk) <= 400 or len(chunk) == 1
    assert all(len(c) <= 2 for c in chunk_by_budget([1] * 5, budget=10**6, max_rows=2))


def test_similar_length_runs_pad_little_and_keep_order():
    from reer.models.batching import similar_length_runs

    lengths = [40, 41, 44, 40, 700, 1250, 1251, 30]
    runs = similar_length_runs(lengths, slack=0.125, budget=8192)
    assert [list(r) for r in runs] == [[0, 1, 2, 3], [4], [5, 6], [7]]
    assert [i for r in runs for i in r] == list(range(len(lengths)))  # every row once, in order
    for r in runs:  # the promise: padding within the slack, size within the budget
        widest = max(lengths[i] for i in r)
        assert widest * len(r) <= max(8192, widest) and widest * len(r) <= 1.125 * sum(lengths[i] for i in r)
    assert [list(r) for r in similar_length_runs([100] * 100, budget=1000)] == [
        list(range(k, k + 10)) for k in range(0, 100, 10)
    ]
    assert similar_length_runs([]) == []


def two_items_two_candidates():
    """2 items x 2 candidates: a 40-token chat header for all, 430 tokens shared within an item, 70 of each candidate's own."""
    header = list(range(40))
    contexts = []
    for item in (1, 2):
        body = header + [1000 * item + t for t in range(390)]
        contexts += [body + [100_000 * item + 1000 * c + t for t in range(70)] for c in (1, 2)]
    return contexts


def test_items_sharing_only_a_header_keep_their_own_long_prefixes():
    contexts = two_items_two_candidates()
    assert common_prefix_len(contexts[0], contexts[1]) == 430 and common_prefix_len(contexts[1], contexts[2]) == 40
    groups = group_by_shared_prefix(contexts, min_shared=32)
    assert sorted(g.members for g in groups) == [(0, 1), (2, 3)]
    assert all(g.prefix_len >= 430 for g in groups)
    # One group on the 40-token header computed 40 + 4 x 460 = 1880 context tokens; two on 430 compute 2 x 430 + 4 x 70.
    assert computed_tokens(groups, contexts) == 1140
    assert computed_tokens([type(groups[0])(40, (0, 1, 2, 3))], contexts) == 1880


def test_a_group_is_split_only_where_splitting_saves_tokens():
    shared = list(range(100))
    contexts = [shared + [500 + p] * 10 + [c, 7] for p in (1, 2) for c in (1, 2)]  # pairs share 110, all 100
    groups = group_by_shared_prefix(contexts, min_shared=32)
    assert [(g.prefix_len, g.members) for g in groups] == [(100, (0, 1, 2, 3))]  # saves 3 x 100 > 2 x 110


def test_groups_are_valid_on_random_contexts():
    rng = random.Random(0)
    for _ in range(200):
        heads = [[rng.randrange(3) for _ in range(rng.randrange(0, 60))] for _ in range(3)]
        contexts = [rng.choice(heads) + [rng.randrange(3) for _ in range(rng.randrange(0, 50))] for _ in range(8)]
        groups = group_by_shared_prefix(contexts, min_shared=8)
        assert sorted(m for g in groups for m in g.members) == list(range(8))
        for g in groups:
            assert g.prefix_len == 0 or (g.prefix_len >= 8 and len(g.members) >= 2)
            for m in g.members:  # the prefix is shared by every member and leaves each a token of its own
                assert contexts[m][: g.prefix_len] == contexts[g.members[0]][: g.prefix_len]
                assert g.prefix_len < len(contexts[m]) or g.prefix_len == 0
        assert sum(g.prefix_len == 0 for g in groups) <= 1
