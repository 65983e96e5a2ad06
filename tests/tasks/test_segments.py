from reer.tasks.segments import join_segments, segment

A = "a" * 120
B = "b" * 130
C = "c" * 110


def test_splits_on_blank_lines():
    assert segment(f"{A}\n\n{B}\n \n{C}") == [A, B, C]


def test_falls_back_to_single_newlines_when_there_is_one_paragraph():
    assert segment(f"{A}\n{B}\n{C}") == [A, B, C]


def test_merges_short_pieces_into_the_next_one():
    assert segment(f"short\n\n{A}\n\n{B}") == [f"short\n\n{A}", B]


def test_merges_a_short_last_piece_into_the_previous_one():
    assert segment(f"{A}\n\n{B}\n\ntail") == [A, f"{B}\n\ntail"]


def test_blank_runs_vanish():
    assert segment(f"\n\n\n{A}\n\n\n\n\n{B}\n\n") == [A, B]


def test_never_splits_inside_display_math():
    math = "\\[\n x = 1\n\n y = 2 \n\\]"
    text = f"{A}\n\n{math} and then {B}\n\n{C}"
    pieces = segment(text)
    assert any(math in p for p in pieces)
    assert pieces[-1] == C


def test_all_short_text_is_one_segment():
    assert segment("one\n\ntwo") == ["one\n\ntwo"]


def test_join_uses_blank_lines():
    assert join_segments([A, B]) == f"{A}\n\n{B}"
