"""Bad inputs are refused in words, never answered with a traceback or a silently wrong number.

Covers: the prompt bootstrap of :func:`humaneval.compare_by_prompt` on one prompt; malformed judgments
files (repeated column names, UTF-16 or binary files, system names differing only in case, repeated
rows); a requested pair without judgments; :func:`humaneval.judgments_needed` outside its range; a
TIA2 mirror that is a symbolic-link loop (library and CLI); ``textnorm evaluate`` on a header-only
scores CSV with a ``subset`` column.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

from textnorm.cli import main
from textnorm.stats import humaneval as he
from textnorm.tia2 import data

HEADER = "rater,prompt,left,right,choice\n"


def _judgments(rows: list[tuple[str, str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(he.COLUMNS))


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- case 1: a bootstrap over one prompt
def _thin_pair() -> pd.DataFrame:
    """a-b judged on two prompts; a-c on two prompts, one of them all ties: one decided prompt; b-c not judged."""
    return _judgments(
        [
            ("r0", "p1", "a", "b", "left"),
            ("r0", "p2", "a", "b", "right"),
            ("r0", "p1", "a", "c", "left"),
            ("r0", "p2", "c", "a", "tie"),
        ]
    )


def test_compare_by_prompt_refuses_one_prompt():
    # before: a zero-width "interval" [0.667, 0.667], as if the win rate were known exactly
    one = _judgments([("r0", "p1", "a", "b", "left"), ("r1", "p1", "a", "b", "left"), ("r2", "p1", "b", "a", "left")])
    with pytest.raises(ValueError, match="interval of 'a' vs 'b' needs decided judgments on at least two prompts"):
        he.compare_by_prompt(one, n_boot=100)


def test_compare_by_prompt_names_the_thin_pair_among_several():
    df = _thin_pair()
    assert he.compare_by_prompt(df, [("a", "b")], n_boot=50).prompts.iloc[0] == 2
    with pytest.raises(ValueError, match="'a' vs 'c' needs decided judgments on at least two prompts, it has 1"):
        he.compare_by_prompt(df, [("a", "b"), ("a", "c")], n_boot=50)


def test_untestable_by_prompt_names_exactly_the_pairs_compare_by_prompt_refuses():
    df = _thin_pair()
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    out = he.untestable_by_prompt(df, pairs)
    assert sorted(out) == [("a", "c"), ("b", "c")]
    assert "it has 1" in out[("a", "c")] and "no judgment compares 'b' with 'c'" in out[("b", "c")]
    for pair in pairs:  # the same verdict as the call it stands for
        try:
            he.compare_by_prompt(df, [pair], n_boot=1)
        except ValueError as exc:
            assert out[pair] == str(exc)
        else:
            assert pair not in out


# ---------------------------------------------------------------- case 2: malformed judgments files
def test_repeated_column_name_is_named(tmp_path: Path):
    # before: pandas renamed the copy to 'left.1' and the error blamed a missing 'right'
    path = _write(tmp_path, "dup.csv", "rater,prompt,left,left,choice\nr,p,A,B,left\n")
    with pytest.raises(he.JudgmentError, match=r"repeats column name\(s\) \['left'\]"):
        he.load_judgments(path)


def test_utf16_and_binary_files_are_not_utf8_csv(tmp_path: Path):
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes((HEADER + "r,p,A,B,left\n").encode("utf-16"))  # before: a raw UnicodeDecodeError
    with pytest.raises(he.JudgmentError, match="is UTF-16, not UTF-8 text CSV"):
        he.load_judgments(utf16)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)  # before: a ParserError about field counts
    with pytest.raises(he.JudgmentError, match="is not UTF-8 text CSV"):
        he.load_judgments(binary)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes((HEADER + "r,caf\u00e9,A,B,left\n").encode("latin-1"))
    with pytest.raises(he.JudgmentError, match="is not UTF-8 text CSV"):
        he.load_judgments(latin1)


def test_system_names_differing_only_in_case(tmp_path: Path):
    # before: two systems, each with half the judgments
    path = _write(tmp_path, "case.csv", HEADER + "r,p,TextNorm,base,left\nr,q,textnorm,base,left\n")
    with pytest.raises(he.JudgmentError, match="differ only in case: 'TextNorm' and 'textnorm'"):
        he.load_judgments(path)


def test_file_concatenated_with_itself_is_an_error(tmp_path: Path):
    body = "r1,p1,A,B,left\nr1,p2,A,B,right\nr2,p1,B,A,tie\n"
    path = _write(tmp_path, "twice.csv", HEADER + body + body)
    with pytest.raises(he.JudgmentError, match=r"every judgment .* appears at least twice \(3 of 6 rows"):
        he.load_judgments(path)
    assert len(he.load_judgments(path, allow_repeats=True)) == 6  # a test-retest design, said explicitly


def test_some_repeated_rows_are_a_warning_with_the_count(tmp_path: Path):
    path = _write(tmp_path, "some.csv", HEADER + "r1,p1,A,B,left\nr1,p2,A,B,right\nr1,p1,A,B, Left\n")
    with pytest.warns(he.JudgmentWarning, match="1 of 3 rows .* are exact duplicates"):
        df = he.load_judgments(path)
    assert len(df) == 3  # kept: a protocol may have raters judge a pair twice


# ---------------------------------------------------------------- case 3: a pair without judgments
def test_pair_without_judgments_is_named():
    df = _judgments([("r0", "p1", "a", "b", "left"), ("r0", "p2", "a", "b", "right")])
    # before: compare returned the row with a NaN win rate and sign-test p = 1
    with pytest.raises(ValueError, match=r"no judgment compares 'a' with 'nobody' \(systems judged: \['a', 'b'\]\)"):
        he.compare(df, [("a", "b"), ("a", "nobody")])
    with pytest.raises(ValueError, match="no judgment compares 'a' with 'nobody'"):
        he.compare_by_prompt(df, [("a", "nobody")])
    with pytest.raises(ValueError, match="each pair must be"):
        he.compare(df, ["ab"])


# ---------------------------------------------------------------- case 4: the power function's range
@pytest.mark.parametrize("p", [0.5, 0.3, 1.0, 1.5, float("nan")])
def test_judgments_needed_refuses_p_outside_half_to_one(p: float):
    # before: 0.5 and 1.5 crashed inside statsmodels, 0.3 and 1.0 returned numbers
    with pytest.raises(ValueError, match="win rate p must be a number strictly between 0.5 and 1"):
        he.judgments_needed(p)


def test_judgments_needed_checks_alpha_and_power():
    with pytest.raises(ValueError, match="alpha must be a number strictly between 0 and 1"):
        he.judgments_needed(0.7, alpha=0)
    with pytest.raises(ValueError, match="power must be a number strictly between 0 and 1"):
        he.judgments_needed(0.7, power=1)


# ---------------------------------------------------------------- case 5: a mirror that is a symlink loop
@pytest.fixture()
def loop(tmp_path: Path) -> Path:
    path = tmp_path / "loop"
    os.symlink("loop", path)  # ln -s loop loop
    return path


def test_symlink_loop_mirror_is_named(loop: Path, monkeypatch: pytest.MonkeyPatch):
    # before: RuntimeError("Symlink loop from ...") out of pathlib
    with pytest.raises(data.TIA2IntegrityError, match=re.escape(f"TIA2 mirror {loop} is a symbolic link loop")):
        data.fetch(mirror=loop)
    monkeypatch.setenv(data.ENV_MIRROR, str(loop))
    with pytest.raises(data.TIA2IntegrityError, match="is a symbolic link loop"):
        data.resolve_mirror(None)


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"textnorm {command}: ")
    return err


def test_cli_symlink_loop_mirror(loop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["fetch", "--mirror", str(loop)]) == 1
    assert "is a symbolic link loop" in _one_line_error(capsys, "fetch")
    scores = _write(tmp_path, "s.csv", "subset,prompt,image,r\ncounting,p,i,0.5\n")
    out = tmp_path / "m.json"
    assert main(["evaluate", "--scores", str(scores), "--out", str(out), "--mirror", str(loop)]) == 1
    assert "is a symbolic link loop" in _one_line_error(capsys, "evaluate")
    assert not out.exists()


# ---------------------------------------------------------------- case 6: header-only scores with a subset
def test_cli_evaluate_header_only_with_subset_column(mirror: Path, tmp_path: Path, capsys):
    # before: IndexError from scores["subset"].iloc[0], read before the empty check
    scores = _write(tmp_path, "h.csv", "subset,prompt,image,r\n")
    out = tmp_path / "m.json"
    assert main(["evaluate", "--scores", str(scores), "--out", str(out), "--mirror", str(mirror)]) == 1
    assert f"{scores} has a header but no rows" in _one_line_error(capsys, "evaluate")
    assert not out.exists()
