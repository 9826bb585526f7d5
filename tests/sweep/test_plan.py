"""Plans: the dry-run grid, and every user mistake as one line on stderr with exit 2."""

from __future__ import annotations

import re
import shutil

import pytest

from cortexedge.cli.main import main
from cortexedge.sweep import PlanError, load_plan
from tests.sweep.conftest import write_plan


@pytest.fixture
def plan(recording_dir, tmp_path):
    shutil.copy(recording_dir / "rec.npz", tmp_path)
    return write_plan(tmp_path, decoders=("gru", "lstm"), seeds=(0, 1, 2))


def test_dry_run_counts_the_grid(plan, capsys):
    assert main(["sweep", str(plan), "--out", str(plan.parent / "out"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "12 cells = 1 x 2 x 2 x 3; 6 training runs" in text
    cells = load_plan(plan).cells()
    assert len(cells) == 12 and len({c.key for c in cells}) == 12
    assert len({c.group for c in cells}) == 6
    assert not (plan.parent / "out").exists()


def test_keys_follow_the_config_and_the_recording(plan):
    keys = {c.key for c in load_plan(plan).cells()}
    plan.write_text(plan.read_text().replace("epochs = 2", "epochs = 3"))
    assert keys.isdisjoint({c.key for c in load_plan(plan).cells()})
    from cortexedge.train.data.synth import generate

    generate("reaching", seed=5, channels=8, minutes=1.0).save(plan.parent / "rec.npz")
    plan.write_text(plan.read_text().replace("epochs = 3", "epochs = 2"))
    assert keys.isdisjoint({c.key for c in load_plan(plan).cells()})


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("seeds", "sedes", "unknown key 'sedes'"),
        ('"gru", ', '"gru", "mamba", ', "unknown decoder 'mamba'"),
        ('"gru", ', '"mine.py:Net", ', "decoder 'mine.py:Net' is user code; pass --trust-code"),
        ('"rec.npz"', '"missing.npz"', "recording not found: missing.npz"),
        ("sparsity = 0.5", "sparsity = 1.5", "recipe 's50': sparsity must lie in [0, 1)"),
        ("sparsity = 0.5", "sparsty = 0.5", "recipe 's50': unknown key 'sparsty'"),
        ("epochs = 2", "epoch = 2", "unknown key 'train.epoch'"),
        ("hidden = 16", "hiden = 16", "unknown key 'model.hiden'"),
        ("[[recipes]]", "[[recipes", "not valid TOML"),
    ],
)
def test_plan_mistakes_are_one_line_and_exit_2(plan, capsys, old, new, message):
    plan.write_text(plan.read_text().replace(old, new, 1))
    with pytest.raises(PlanError, match=re.escape(message)):
        load_plan(plan)
    assert main(["sweep", str(plan), "--out", str(plan.parent / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_address_and_missing_plan_exit_2(plan, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["sweep", str(plan), "--out", out, "--address", "no port"]) == 2
    assert "--address must be 'auto' or HOST:PORT, got 'no port'" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "nope.toml"), "--out", out]) == 2
    assert "plan file not found" in capsys.readouterr().err
    assert main(["sweep", "report", str(tmp_path / "empty")]) == 2
    assert "no results.jsonl results" in capsys.readouterr().err


def test_a_user_decoder_needs_trust_and_its_source_is_in_the_keys(plan):
    """A plan names a user's class by a file next to it; loading it needs trust_code, and an
    edited file is a new training run and new cells."""

    from tests.sweep.conftest import USER_LSTM

    shutil.copy(USER_LSTM.rpartition(":")[0], plan.parent / "mine.py")
    text = plan.read_text().replace('"gru", ', '"mine.py:PlainLSTM", ', 1)
    plan.write_text(text.replace('[models."gru"]', '[models."mine.py:PlainLSTM"]'))
    with pytest.raises(PlanError, match="is user code; pass --trust-code"):
        load_plan(plan)
    loaded = load_plan(plan, trust_code=True)
    spec = f"{(plan.parent / 'mine.py').resolve()}:PlainLSTM"
    assert spec in loaded.decoders and loaded.code[spec]["spec"] == spec

    def keys(p) -> dict[str, set]:
        return {d: {c.key for c in p.cells() if c.decoder == d} for d in (spec, "lstm")}

    before = keys(loaded)
    with open(plan.parent / "mine.py", "a") as f:
        f.write("\n# edited\n")
    after = keys(load_plan(plan, trust_code=True))
    assert before[spec].isdisjoint(after[spec]) and before["lstm"] == after["lstm"]
