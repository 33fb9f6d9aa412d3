"""experiments/gradient_scale.py: the gradient-norm ratios of docs/ssl.md's table, measured on a run's checkpoint
and printed again from the saved record."""

import importlib.util
import json
import sys

import pytest

from manifold_mixup.ssl.train import main as train

from conftest import ROOT

spec = importlib.util.spec_from_file_location("gradient_scale", ROOT / "experiments" / "gradient_scale.py")
E = importlib.util.module_from_spec(spec)
sys.modules["gradient_scale"] = E
spec.loader.exec_module(E)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gs") / "run"
    config = str(ROOT / "configs" / "ssl" / "digits.yaml")
    assert train(["--config", config, "--epochs", "1", "--iterations-per-epoch", "3", "--out", str(out)]) == 0
    return out


def test_measures_every_term_and_reads_the_saved_record_back(digits_run, tmp_path, capsys):
    saved = tmp_path / "trained.json"
    E.main([str(digits_run), "--batches", "2", "--json", str(saved)])
    printed = capsys.readouterr().out
    record = json.loads(saved.read_text())
    assert record["where"] == "the checkpoint at update 3" and record["batches"] == 2
    assert set(record["ratios"]) == set(E.NAMES) and all(len(v) == 2 for v in record["ratios"].values())
    r = {k: sum(v) / 2 for k, v in record["ratios"].items()}
    assert r["l1_all"] > r["l1_first"] > 0  # the first tensor is one of every parameter
    assert r["cons_prob"] < r["cons_logit"]  # the softmax squashes the consistency gradient (docs/ssl.md)
    assert 0 < r["bce"] < 0.5  # BCE's mean over 10 outputs pulls far less than soft cross-entropy
    E.main(["--show", str(saved)])
    assert capsys.readouterr().out.splitlines()[-7:] == printed.splitlines()[-7:]


def test_the_fresh_network_differs_from_the_checkpoint_and_json_is_never_overwritten(digits_run, tmp_path, capsys):
    fresh = E.measure(digits_run, batches=1, init=True)
    trained = E.measure(digits_run, batches=1)
    assert fresh["where"] == "a fresh network" and fresh["sup_norm"] != trained["sup_norm"]
    existing = tmp_path / "x.json"
    existing.write_text("keep")
    with pytest.raises(SystemExit):
        E.main([str(digits_run), "--json", str(existing)])
    assert existing.read_text() == "keep"
