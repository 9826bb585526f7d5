"""The recipe API end to end on a decoder class the toolkit has never seen, and its checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cortexedge.compress.artifacts import load_compressed, save_compressed
from cortexedge.compress.recipe import Recipe, compress
from cortexedge.errors import CortexEdgeError
from cortexedge.train.checkpoint import COMPRESSION_FILE
from cortexedge.train.data.synth_reaching import reaching

C, E, H = 12, 16, 16


class UserGRUDecoder(nn.Module):
    """A user's own decoder: log1p, Linear encoder + ReLU, 2-layer nn.GRU, Linear readout."""

    def __init__(self, channels: int = C) -> None:
        super().__init__()
        self.encoder = nn.Linear(channels, E)
        self.gru = nn.GRU(E, H, num_layers=2, batch_first=True)
        self.readout = nn.Linear(H, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(torch.relu(self.encoder(torch.log1p(x))))
        return self.readout(out)


@pytest.fixture(scope="module")
def recording():
    return reaching(seed=0, channels=C, minutes=0.25)


@pytest.fixture(scope="module")
def result(recording):
    torch.manual_seed(0)
    recipe = Recipe(
        sparsity=0.5, structured=0.25, bits=8, finetune_epochs=1, lr=1e-3, calib_batches=2
    )
    model = UserGRUDecoder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = compress(
        model, recording, recipe, data={"length": 4}, train_stride=8, batch_size=64, threads=1
    )
    for k, v in model.state_dict().items():  # the input model is untouched
        assert torch.equal(v, before[k])
    return res


@pytest.mark.slow
def test_user_decoder_goes_through_every_stage(result) -> None:
    stages = {s["name"]: s for s in result.stages}
    assert [s["name"] for s in result.stages] == ["float", "structured", "magnitude", "quantized"]
    for s in result.stages:
        assert {"r2", "macs_dense", "macs_effective", "params", "sparsity", "bytes"} <= set(s)
    # 25% of the encoder channels and of the GRU units: 16 -> 12
    model = result.model
    assert model.encoder.out_features == 12 and model.gru.hidden_size == 12
    g = lambda i: 3 * 12 * (i + 12) + 3 * 12  # noqa: E731
    assert stages["structured"]["macs_dense"] == C * 12 + g(12) + g(12) + 12 * 2
    assert stages["structured"]["params"] < stages["float"]["params"]
    assert stages["magnitude"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert stages["magnitude"]["macs_effective"] < 0.6 * stages["magnitude"]["macs_dense"]
    assert stages["quantized"]["sparsity"] >= 0.5  # masks held through QAT
    assert stages["quantized"]["bytes"] < 0.3 * stages["float"]["bytes"]
    assert stages["float"]["bytes"] == 4 * stages["float"]["params"]
    # the float pruned model (before QAT) is kept: pruned shapes, the magnitude zeros, no quantizers
    pruned = result.pruned
    assert pruned.gru.hidden_size == 12 and type(pruned.gru) is nn.GRU
    weights = [p for n, p in pruned.named_parameters() if "weight" in n]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(stages["magnitude"]["sparsity"], abs=1e-3)


@pytest.mark.slow
def test_checkpoint_round_trip_without_pickle(result, tmp_path) -> None:
    out = save_compressed(result, tmp_path / "c", extra={"family": None})
    config = json.loads((out / "config.json").read_text())
    info = config["compression"]
    assert info["recipe"]["sparsity"] == 0.5 and info["quant"]["weight_bits"] == 8
    assert info["sparsity"]["gru.cells.0.ih.weight"]["total"] == 3 * 12 * 12
    assert set(info["bits"].values()) == {8}
    assert info["scales"]["readout.weight_quant"]["scale"][0] > 0
    assert Recipe.from_json(info["recipe"]) == result.recipe
    stages = json.loads((out / COMPRESSION_FILE).read_text())["stages"]
    assert [s["name"] for s in stages] == ["float", "structured", "magnitude", "quantized"]
    model, _ = load_compressed(out, model=UserGRUDecoder())
    x = torch.rand(3, 7, C) * 2
    torch.testing.assert_close(model(x), result.model.eval()(x), rtol=0, atol=0)


@pytest.mark.slow
def test_gradual_schedule_raises_sparsity_cubically_over_rounds(recording, monkeypatch) -> None:
    from cortexedge.compress import recipe as recipe_module

    asked = []
    real = recipe_module.magnitude_masks

    def spy(model, sparsity, *args):
        asked.append(sparsity)
        return real(model, sparsity, *args)

    monkeypatch.setattr(recipe_module, "magnitude_masks", spy)
    recipe = Recipe(sparsity=0.5, schedule="gradual", prune_rounds=3, finetune_epochs=3)
    res = compress(
        UserGRUDecoder(), recording, recipe, data={"length": 4}, train_stride=16, threads=1
    )
    assert asked == pytest.approx([0.5 * (1 - (2 / 3) ** 3), 0.5 * (1 - (1 / 3) ** 3), 0.5])
    assert res.stages[-1]["name"] == "magnitude"
    assert res.stages[-1]["sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_bad_recipes_are_rejected_before_any_work(recording) -> None:
    model = UserGRUDecoder()
    cases = [
        (Recipe(sparsity=1.0), r"sparsity must lie in \[0, 1\), got 1.0"),
        (Recipe(sparsity=-0.2), r"sparsity must lie in \[0, 1\), got -0.2"),
        (Recipe(structured=1.5), r"structured must lie in \[0, 1\), got 1.5"),
        (Recipe(bits=5), "bits: 5-bit weights are not supported"),
        (Recipe(bits=8, act_bits=2), "act_bits: 2-bit activations are not supported"),
        (Recipe(sparsity=0.5, scope="all"), "scope must be one of global, layer"),
        (Recipe(sparsity=0.5, lr=0.0), r"lr must be positive, got 0.0"),
        (Recipe(bits=8, qat_lr=-1e-4), r"qat_lr must be positive, got -0.0001"),
        (Recipe(), "recipe does nothing"),
    ]
    for recipe, message in cases:
        with pytest.raises(CortexEdgeError, match=message):
            compress(model, recording, recipe)


def test_model_without_prunable_layer_is_rejected(recording) -> None:
    class Mean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.scale * x[..., :2]

    with pytest.raises(CortexEdgeError, match="has no prunable layer"):
        compress(Mean(), recording, Recipe(sparsity=0.5, finetune_epochs=0))


def test_pruning_and_qat_fine_tune_at_their_own_rates(recording, monkeypatch) -> None:
    import cortexedge.train.fit as fit_module

    rates, real = [], fit_module.fit

    def spy(*args, **kwargs):
        rates.append(kwargs["lr"])
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "fit", spy)
    recipe = Recipe(sparsity=0.5, bits=8, finetune_epochs=1, qat_epochs=1, lr=3e-4,
                    qat_lr=1e-5, calib_batches=2)  # fmt: skip
    compress(UserGRUDecoder(), recording, recipe, data={"length": 4}, train_stride=16, threads=1)
    assert rates == [3e-4, 1e-5]
    assert Recipe.from_json({"sparsity": 0.5}).qat_lr == 1e-4  # older recipes: the default
