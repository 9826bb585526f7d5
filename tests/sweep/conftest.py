"""Tiny sweeps: a 1-minute synthetic recording, 2-epoch runs of 16-unit decoders."""

from __future__ import annotations

from pathlib import Path

import pytest

# a decoder written as a user writes one (tests/users/), named in plans by its file
USER_LSTM = str(Path(__file__).resolve().parents[1] / "users" / "plain_lstm.py") + ":PlainLSTM"

PLAN = """
recordings = ["rec.npz"]
decoders = {decoders}
seeds = {seeds}
[train]
epochs = 2
train_stride = 8
{models}
[[recipes]]
name = "dense"
[[recipes]]
name = "s50"
sparsity = 0.5
finetune_epochs = 1
"""


@pytest.fixture(scope="session")
def recording_dir(tmp_path_factory) -> Path:
    from cortexedge.train.data.synth import generate

    folder = tmp_path_factory.mktemp("sweep-data")
    generate("reaching", seed=0, channels=8, minutes=1.0).save(folder / "rec.npz")
    return folder


def write_plan(folder: Path, *, decoders=("gru", "lstm"), seeds=(0, 1), lstm_hidden=16) -> Path:
    """A plan over the recording in `folder`: len(decoders) x 2 recipes x len(seeds) cells."""
    path = folder / "plan.toml"
    hidden = {"gru": 16, "lstm": lstm_hidden}
    models = "\n".join(f'[models."{d}"]\nhidden = {hidden.get(d, 16)}' for d in decoders)
    text = PLAN.format(decoders=list(decoders), seeds=list(seeds), models=models)
    path.write_text(text.replace("'", '"'))
    return path


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of 2 CPUs shared by a module's sweeps (start-up costs seconds)."""
    import os

    from cortexedge.sweep.runner import LOOPBACK_ENV

    os.environ.update(LOOPBACK_ENV)
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()
