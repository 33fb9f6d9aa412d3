"""experiments/anchor_original_ssl.py: a wrong --original folder is a one-line usage error (no original code needed)."""

import pytest

from conftest import run_python


@pytest.mark.parametrize("layout", ["missing", "empty"])
def test_wrong_original_folder_is_a_one_line_error(tmp_path, layout):
    keep = tmp_path / "notes.txt"
    keep.write_bytes(b"untouched\n")
    original = tmp_path / "semi-supervised"
    if layout == "empty":  # a folder, but not the original's: no networks/ package, no utils.py
        original.mkdir()
    result = run_python("experiments/anchor_original_ssl.py", "--original", str(original), "--repeat", "1")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "--original" in lines[0] and str(original) in lines[0]
    assert result.stdout == ""
    assert keep.read_bytes() == b"untouched\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["notes.txt"] + (["semi-supervised"] * (layout == "empty"))
    )
