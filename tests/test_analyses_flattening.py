import json

import pytest
import torch

from manifold_mixup.analyses.flattening import (
    BOTTLENECK,
    RECIPES,
    digits_net,
    main,
    parse_seeds,
    singular_value_summary,
)
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.layers import check_layers


def orthonormal(rows: int, cols: int, g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=g, dtype=torch.float64))
    return q


def constructed(spectra: dict[int, list[float]], n: int = 20, d: int = 6, seed: int = 0, offset: bool = False):
    """h rows of class c = U diag(s_c) Vᵀ (+ a class mean when ``offset``), classes interleaved."""
    g = torch.Generator().manual_seed(seed)
    blocks, labels = [], []
    for c, s in spectra.items():
        r = len(s)
        if offset:  # U orthogonal to the all-ones vector: the block has zero column means before the offset
            ones = torch.ones(n, 1, dtype=torch.float64)
            u = torch.linalg.qr(torch.cat([ones, torch.randn(n, r, generator=g, dtype=torch.float64)], 1))[0][:, 1:]
        else:
            u = orthonormal(n, r, g)
        h = u @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ orthonormal(d, r, g).T
        if offset:
            h = h + torch.randn(1, d, generator=g, dtype=torch.float64) * 10
        blocks.append(h)
        labels.append(torch.full((n,), c))
    h, y = torch.cat(blocks), torch.cat(labels)
    perm = torch.randperm(len(y), generator=g)
    return h[perm].float(), y[perm]


def test_summary_recovers_the_singular_values_of_a_constructed_representation():
    spectra = {0: [5.0, 2.0, 1.0], 1: [8.0, 0.5], 3: [3.0, 3.0, 3.0, 1.0]}
    h, y = constructed(spectra)
    out = singular_value_summary(h, y)
    assert [c["label"] for c in out["classes"]] == [0, 1, 3]
    for c in out["classes"]:
        s = spectra[c["label"]]
        assert c["n"] == 20 and c["top"] == pytest.approx(s[0], rel=1e-5)
        assert c["rest"] == pytest.approx(sum(s[1:]), rel=1e-5)
    assert out["top"] == pytest.approx((5 + 8 + 3) / 3, rel=1e-5)
    assert out["rest"] == pytest.approx((3 + 0.5 + 7) / 3, rel=1e-5)


def test_centring_removes_each_class_mean_and_the_raw_statistics_keep_it():
    spectra = {0: [4.0, 1.0], 1: [2.0, 0.25]}
    h, y = constructed(spectra, offset=True)
    centred = singular_value_summary(h, y, center=True)
    for c in centred["classes"]:
        assert c["top"] == pytest.approx(spectra[c["label"]][0], rel=1e-4)
        assert c["rest"] == pytest.approx(sum(spectra[c["label"]][1:]), rel=1e-4)
    raw = singular_value_summary(h, y)
    assert raw["top"] > centred["top"] * 2  # the offset of norm ~10·√6 per row dominates the raw matrix


def test_summary_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="need h"):
        singular_value_summary(torch.zeros(4, 3), torch.zeros(5, dtype=torch.int64))


def test_manifold_recipe_mixes_at_the_12_unit_bottleneck_only():
    net = digits_net(width=16, dropout=0.5)
    assert check_layers(net, RECIPES["manifold"].points) == (f"stages.{BOTTLENECK - 1}",)
    assert check_layers(net, RECIPES["input"].points) == ("input",)
    x = torch.rand(5, 64)
    assert net(x, 0, BOTTLENECK).shape == (5, 12) and net(x).shape == (5, 10)
    net.eval()
    assert torch.equal(net(net(x, 0, BOTTLENECK), BOTTLENECK), net(x))


def test_parse_seeds():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    with pytest.raises(UsageError, match="comma-separated integers"):
        parse_seeds("x")
    with pytest.raises(UsageError, match="repeats"):
        parse_seeds("1,1")


def test_command_runs_end_to_end_on_a_tiny_setting(tmp_path, capsys):
    out = tmp_path / "sub" / "flat.json"
    assert main(["--out", str(out), "--seeds", "0,1", "--steps", "1", "--width", "4"]) == 0
    result = json.loads(out.read_text())
    assert list(result["summary"]) == ["none", "weight_decay", "dropout", "input", "manifold"]
    assert len(result["runs"]) == 10 and result["summary"]["manifold"]["paper_rest"] == 40.98
    top = [r["top"] for r in result["runs"] if r["method"] == "none"]
    assert result["summary"]["none"]["top"][0] == pytest.approx(sum(top) / 2)
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "| `manifold` |" in capsys.readouterr().out


def test_bad_seeds_are_one_line_exit_2_and_touch_nothing(tmp_path, in_process):
    existing = tmp_path / "flat.json"
    existing.write_text("keep me\n")
    bad = in_process("analyses.flattening", "--out", str(existing), "--seeds", "x")
    assert bad.returncode == 2 and "--seeds must be comma-separated integers" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert existing.read_text() == "keep me\n" and sorted(p.name for p in tmp_path.iterdir()) == ["flat.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--methods", "none,bogus"], "unknown method 'bogus'"),
        (["--out", "x.txt"], "must name a .json file"),
    ],
)
def test_other_bad_inputs_are_usage_errors_before_any_work(args, message, tmp_path):
    with pytest.raises(UsageError, match=message):
        main(["--out", str(tmp_path / "f.json"), *args])
    assert list(tmp_path.iterdir()) == []
