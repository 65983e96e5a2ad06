"""Converting the shipped model: two processes at once never rmtree a folder the other may be reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from reer.models import shipped


def fake_convert(marker: str):
    def convert(gguf: Path, into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        (into / "config.json").write_text(marker)

    return convert


def test_the_conversion_lands_in_place_and_leaves_no_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "convert_into", fake_convert("mine"))
    folder = tmp_path / "models" / "M"
    shipped.convert_gguf(tmp_path / "m.gguf", folder)
    assert (folder / "config.json").read_text() == "mine"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["M"]


def test_a_folder_another_process_finished_meanwhile_is_kept_and_ours_discarded(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "M"
    theirs = fake_convert("theirs")
    mine = fake_convert("mine")

    def convert(gguf: Path, into: Path) -> None:
        theirs(gguf, folder)  # the other process renames its folder into place while we convert
        (folder / "weights").write_text("being read")
        mine(gguf, into)

    monkeypatch.setattr(shipped, "convert_into", convert)
    shipped.convert_gguf(tmp_path / "m.gguf", folder)
    assert (folder / "config.json").read_text() == "theirs"
    assert (folder / "weights").read_text() == "being read"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["M"]


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(gguf: Path, into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        raise RuntimeError("boom")

    monkeypatch.setattr(shipped, "convert_into", broken)
    folder = tmp_path / "models" / "M"
    with pytest.raises(RuntimeError, match="boom"):
        shipped.convert_gguf(tmp_path / "m.gguf", folder)
    assert not folder.exists() and list(folder.parent.iterdir()) == []
