"""The family table through the model registry: names, unknown names, user classes, and
rebuilding from `config()`."""

import json

import pytest
import torch

from cortexedge.errors import CheckpointError, CortexEdgeError
from cortexedge.families import FAMILIES
from cortexedge.train.models import registry
from cortexedge.train.models.registry import build_model, model_name, register_model

# Non-default settings, so that a config() dropping any of them would show in the round trip.
CONFIGS = {
    "aegru": (
        dict(in_channels=5, out_dim=3, enc_dim=4, hidden=6, layers=2, bin_width=3, num_steps=2),
        lambda: torch.poisson(torch.full((2, 4, 5), 2.0)),
    ),
    "gru": (
        dict(in_channels=5, hidden=6, layers=2, transform="log1p"),
        lambda: torch.rand(2, 4, 5),
    ),
    "lstm": (dict(in_channels=5, out_dim=1, hidden=4, dropout=0.1), lambda: torch.rand(2, 4, 5)),
    "cnn_bilstm": (
        dict(in_channels=5, conv_channels=3, kernel_size=3, hidden=4, out_kin=2, lookback=6),
        lambda: torch.randn(2, 6, 5),
    ),
    "cnn_rnn": (
        dict(frame_shape=[8, 6], frames_per_input=2, conv_channels=[2, 3], hidden=4, layers=2),
        lambda: torch.rand(2, 4, 8, 6),
    ),
    "roi_gru": (dict(in_channels=7, hidden=5), lambda: torch.randn(2, 4, 7)),
    "ridge": (dict(in_channels=3, lags=2, bin_width=3, alpha=0.5), lambda: torch.rand(2, 8, 3)),
    "kalman": (dict(in_channels=3, out_dim=2), lambda: torch.randn(2, 5, 3)),
}


def test_registered_names():
    assert sorted(FAMILIES) == sorted(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_rebuild_from_json_config(name):
    kwargs, make_input = CONFIGS[name]
    torch.manual_seed(0)
    model = build_model(name, **kwargs).eval()
    assert model_name(model) == name
    config = json.loads(json.dumps(model.config()))
    assert {k: config[k] for k in kwargs} == kwargs
    rebuilt = build_model(name, **config).eval()
    assert rebuilt.config() == model.config()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = make_input()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_unknown_name():
    with pytest.raises(
        CheckpointError,
        match=r"unknown model class 'transformer' "
        r"\(known: aegru, cnn_bilstm, cnn_rnn, gru, kalman, lstm, ridge, roi_gru\)",
    ):
        build_model("transformer", in_channels=3)


def test_bad_config_keyword():
    with pytest.raises(CheckpointError, match=r"model 'gru': bad config: .*'hiden'"):
        build_model("gru", in_channels=3, hiden=4)


class Doubler(torch.nn.Module):
    """A user's decoder: y = scale · x."""

    def __init__(self, scale: float = 2.0) -> None:
        super().__init__()
        self.scale = scale

    def config(self) -> dict:
        return {"scale": self.scale}

    def forward(self, x):
        return self.scale * x


def test_register_user_class(family_table):
    assert register_model("doubler")(Doubler) is Doubler
    assert family_table["doubler"].model_class() is Doubler
    model = registry.build_model("doubler", scale=3.0)
    assert model(torch.ones(2)).tolist() == [3.0, 3.0]
    assert registry.model_name(model) == "doubler"
    rebuilt = registry.build_model("doubler", **model.config())
    assert rebuilt.scale == 3.0
    register_model("doubler")(Doubler)  # registering the same class again is harmless


def test_register_rejects_taken_name_and_missing_config(family_table):
    with pytest.raises(
        CortexEdgeError, match="model name 'gru' is already registered to GRUDecoder"
    ):
        register_model("gru")(Doubler)
    with pytest.raises(CortexEdgeError, match="model class Linear needs a config\\(\\) method"):
        register_model("linear")(torch.nn.Linear)
    assert "linear" not in family_table


def test_model_name_of_unregistered_class():
    with pytest.raises(CheckpointError, match="model class Doubler is not registered"):
        model_name(Doubler())


def test_package_reexports_lazily():
    import cortexedge.train.models as models

    assert models.build_model is build_model
    assert models.AEGRU is FAMILIES["aegru"].model_class()
    with pytest.raises(AttributeError, match="has no attribute 'Transformer'"):
        models.Transformer  # noqa: B018
