"""Write-then-rename helpers: a failure leaves the old result and no temporary behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from deblur_cli.atomic import replaced_file, replaced_folder


def test_replaced_file_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "w.bin"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError), replaced_file(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert final.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]
    with replaced_file(final) as tmp:
        tmp.write_bytes(b"new")
    assert final.read_bytes() == b"new"


def test_replaced_folder_swaps_the_whole_folder_only_on_success(tmp_path: Path) -> None:
    final, staging = tmp_path / "set", tmp_path / ".partial"
    (final).mkdir()
    (final / "stale.txt").write_text("x")
    with pytest.raises(RuntimeError), replaced_folder(final, staging=staging) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed")
    assert [p.name for p in final.iterdir()] == ["stale.txt"]
    with replaced_folder(final, staging=staging) as tmp:
        (tmp / "a.txt").write_text("done")
    assert [p.name for p in final.iterdir()] == ["a.txt"]
    assert list(staging.iterdir()) == []


def test_replaced_file_gets_the_usual_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with replaced_file(tmp_path / "weights.safetensors") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "weights.safetensors").stat().st_mode) == 0o644
