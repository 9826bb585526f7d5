"""Structured pruning: remove whole encoder channels, conv filters and recurrent hidden units.

torch-pruning's dependency graph finds what else must shrink with a channel (a norm's affine
entries, the consumer's input columns, through reshapes and element-wise ops). It cannot trace
recurrent layers, so while the graph is built every recurrent module runs as ONE opaque autograd
node whose only traced input is its input sequence (the hidden state is not traced, so a cell's
feedback loop does not couple its outputs with its inputs), and `RecurrentAdapter` prunes it
through `recurrent_pruners`: removing a hidden unit removes all of its gate blocks, and the
graph slices every consumer of h. Layers whose output is the model's output are never pruned.

`prune_structured` removes `ratio` of every group (rounded down) by importance and returns the
plan: the root layer and the removed indices of every group, in order. `replay` applies a plan
to a freshly built model, which is how a compressed checkpoint is rebuilt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from cortexedge.compress.importance import channel_scores, lowest, unit_scores
from cortexedge.compress.layers import pruner_for
from cortexedge.compress.recurrent_pruners import output_units
from cortexedge.errors import CortexEdgeError

ForwardFn = Callable[[nn.Module, Tensor], object]
# int attributes in which decoders commonly keep a recurrent layer's width (used for zero states)
SIZE_NAMES = ("hidden", "hidden_size", "hidden_dim", "n_hidden", "num_hidden", "hidden_units")


@dataclass
class PlanStep:
    """One pruned group: its root layer, the removed root channels, and for stacked RNNs the
    hidden units removed in the inner cells."""

    root: str
    idxs: list[int]
    inner: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"root": self.root, "idxs": self.idxs, "inner": self.inner}

    @classmethod
    def from_json(cls, d: dict) -> PlanStep:
        return cls(d["root"], [int(i) for i in d["idxs"]], dict(d.get("inner") or {}))


class _Opaque(torch.autograd.Function):
    """Identity on a precomputed output whose autograd parents are only the traced input (and a
    weight, so that the node exists even when the input needs no gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, out: Tensor) -> Tensor:
        return out.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, None


def _opaque_forward(module: nn.Module, real: Callable) -> Callable:
    weight = next(module.parameters())

    def forward(x: Tensor, *args, **kwargs):
        with torch.no_grad():
            out = real(x, *args, **kwargs)
        if isinstance(module, nn.RNNCellBase):  # h' (GRUCell) or (h', c') (LSTMCell)
            if isinstance(out, Tensor):
                return _Opaque.apply(x, weight, out)
            return _Opaque.apply(x, weight, out[0]), out[1]
        seq, final = out
        seq = _Opaque.apply(x, weight, seq)
        if getattr(module, "bidirectional", False):
            return seq, final
        # unidirectional: the last layer's final state is the last step of the traced sequence
        last = seq[:, -1] if module.batch_first else seq[-1]
        h = final[0] if isinstance(final, tuple) else final
        h_n = torch.stack([*h[:-1], last])
        return seq, ((h_n, final[1]) if isinstance(final, tuple) else h_n)

    return forward


@contextlib.contextmanager
def opaque_recurrent(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Within the block every recurrent module of `model` runs as one opaque node."""
    modules = [m for m in model.modules() if pruner_for(m) is not None]
    for m in modules:
        m.forward = _opaque_forward(m, type(m).forward.__get__(m))
    try:
        yield modules
    finally:
        for m in modules:
            del m.forward


def _adapter_type():
    import torch_pruning as tp

    class RecurrentAdapter(tp.pruner.BasePruningFunc):
        """torch-pruning's view of a recurrent module: out channels are the last layer's hidden
        units ([fwd | bwd]), in channels the input features. `pending[module]` holds the inner
        cells' units to remove together with the next out-channel pruning."""

        TARGET_MODULES = None

        def __init__(self) -> None:
            super().__init__()
            self.pending: dict[nn.Module, dict[str, list[int]]] = {}

        def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            pruner = pruner_for(layer)
            units = {**self.pending.pop(layer, {}), **output_units(pruner, layer, list(idxs))}
            pruner.prune_units(layer, units)
            return layer

        def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
            pruner_for(layer).prune_inputs(layer, list(idxs))
            return layer

        def get_out_channels(self, layer: nn.Module) -> int:
            return layer.hidden_size * pruner_for(layer).directions(layer)

        def get_in_channels(self, layer: nn.Module) -> int:
            return layer.input_size

    return RecurrentAdapter


def _flatten(out: object) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    return []


class Graph:
    """torch-pruning's dependency graph of a model, with our recurrent adapter registered."""

    def __init__(self, model: nn.Module, example: Tensor, forward_fn: ForwardFn | None = None):
        import torch_pruning as tp

        self.tp, self.model = tp, model
        self.adapter = _adapter_type()()
        self.names = {m: n for n, m in model.named_modules()}
        recurrent = {type(m) for m in model.modules() if pruner_for(m) is not None}
        for m in model.modules():
            if pruner_for(m) is not None:
                pruner_for(m).check(m)
        was_training = model.training
        forward = forward_fn or (lambda m, x: m(x))
        try:
            with opaque_recurrent(model):
                self.dg = tp.DependencyGraph().build_dependency(
                    model,
                    example_inputs=example,
                    forward_fn=lambda m, x: _flatten(forward(m, x)),
                    customized_pruners={t: self.adapter for t in recurrent},
                    verbose=False,
                )
        finally:
            model.train(was_training)

    def pruner(self, module: nn.Module):
        return self.dg.get_pruner_of_module(module)

    def out_channels(self, module: nn.Module) -> int | None:
        return self.dg.get_out_channels(module)

    def feeds_output(self, module: nn.Module) -> bool:
        """True when the module's channels reach a model output (or nothing) without passing
        another channel-mixing layer (Linear, Conv, recurrent)."""
        mixing = (nn.Linear, self.tp.ops.TORCH_CONV)
        root = self.dg.module2node[module]
        stack, seen = [root], set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            m = node.module
            if node is not root and (isinstance(m, mixing) or pruner_for(m) is not None):
                continue
            if isinstance(m, self.tp.ops._OutputOp) or not node.outputs:
                return True
            stack.extend(node.outputs)
        return False

    def group(self, module: nn.Module, idxs: list[int]):
        return self.dg.get_pruning_group(module, self.pruner(module).prune_out_channels, idxs)

    def apply(self, step: PlanStep) -> None:
        """Prune one plan step (root channels plus inner recurrent units)."""
        module = self.model.get_submodule(step.root)
        if step.inner:
            self.adapter.pending[module] = {c: list(u) for c, u in step.inner.items()}
        widths = {m: m.hidden_size for m in self.model.modules() if pruner_for(m) is not None}
        self.group(module, step.idxs).prune(record_history=False)
        for m, old in widths.items():
            if m.hidden_size != old:
                self._sync_width(self.names[m], old, m.hidden_size)

    def _sync_width(self, name: str, old: int, new: int) -> None:
        """Update SIZE_NAMES attributes equal to the old width on the module's ancestors, where
        decoders keep the width they build zero states with."""
        parts = name.split(".")
        for depth in range(len(parts)):
            owner = self.model.get_submodule(".".join(parts[:depth]))
            for attr in SIZE_NAMES:
                if type(vars(owner).get(attr)) is int and vars(owner)[attr] == old:
                    setattr(owner, attr, new)


def _group_scores(graph: Graph, module: nn.Module, how: str) -> Tensor:
    n = graph.out_channels(module)
    scores = torch.zeros(n)
    for item in graph.group(module, list(range(n))).items:
        if item.root_idxs is None or any(r is None for r in item.root_idxs):
            continue
        side = "out" if graph.dg.is_out_channel_pruning_fn(item.dep.pruning_fn) else "in"
        local = channel_scores(item.dep.layer, side, [int(i) for i in item.idxs], how)
        scores.index_add_(0, torch.tensor([int(r) for r in item.root_idxs]), local)
    return scores


def _plan_recurrent(graph: Graph, module: nn.Module, ratio: float, how: str) -> PlanStep | None:
    pruner = pruner_for(module)
    H = module.hidden_size
    n = int(ratio * H)
    if n == 0:
        return None
    scores = _group_scores(graph, module, how)
    idxs = []
    for d in range(pruner.directions(module)):
        idxs += [d * H + k for k in lowest(scores[d * H : (d + 1) * H], n)]
    inner_cells = pruner.cells(module)[: -pruner.directions(module)]
    inner = {c: lowest(unit_scores(module, c, how), n) for c in inner_cells}
    return PlanStep(graph.names[module], idxs, inner)


def _plan_feedforward(graph: Graph, module: nn.Module, ratio: float, how: str) -> PlanStep | None:
    n_out = graph.out_channels(module)
    n = int(ratio * n_out)
    if n == 0:
        return None
    return PlanStep(graph.names[module], lowest(_group_scores(graph, module, how), n))


def _roots(graph: Graph, ignored: Sequence[nn.Module]) -> list[nn.Module]:
    """Layers whose output channels start a group: Linear, Conv and recurrent modules that are
    traced, not ignored and not producing a model output; each group is visited once."""
    tp = graph.tp
    kinds = (nn.Linear, tp.ops.TORCH_CONV)
    roots, covered = [], set()
    for m in graph.dg.module2node:
        if not isinstance(m, nn.Module) or m in ignored or m in covered:
            continue
        if not (isinstance(m, kinds) or pruner_for(m) is not None):
            continue
        if graph.feeds_output(m) or not graph.out_channels(m):
            continue
        if isinstance(m, tp.ops.TORCH_CONV) and m.groups > 1:
            continue
        roots.append(m)
        for dep, _ in graph.group(m, [0]):
            if graph.dg.is_out_channel_pruning_fn(dep.pruning_fn):
                covered.add(dep.layer)
    return roots


def prune_structured(
    model: nn.Module,
    example: Tensor,
    ratio: float,
    *,
    importance: str = "magnitude",
    forward_fn: ForwardFn | None = None,
    ignored: Sequence[nn.Module] = (),
) -> list[PlanStep]:
    """Remove `ratio` (rounded down) of every channel group and of every recurrent layer's hidden
    units, in place, and return the plan. `importance`: "magnitude" (group L2) or "taylor"
    (needs `.grad` on the weights). `example` is one input batch used to trace the model."""
    if not 0.0 <= ratio < 1.0:
        raise CortexEdgeError(f"structured ratio must lie in [0, 1), got {ratio}")
    if importance not in ("magnitude", "taylor"):
        raise CortexEdgeError(f"importance must be 'magnitude' or 'taylor', got '{importance}'")
    graph = Graph(model, example, forward_fn)
    roots = _roots(graph, ignored)
    if not roots:
        raise CortexEdgeError(
            "model has no structurally prunable layer (Linear/Conv/GRU/LSTM feeding another layer)"
        )
    plan = []
    for m in roots:
        planner = _plan_recurrent if pruner_for(m) is not None else _plan_feedforward
        step = planner(graph, m, ratio, importance)
        if step is not None:
            graph.apply(step)
            plan.append(step)
    _check_runs(model, example, forward_fn)
    return plan


def replay(model: nn.Module, example: Tensor, plan: list[PlanStep], forward_fn=None) -> nn.Module:
    """Apply a plan from `prune_structured` to a fresh copy of the original model, in place."""
    if plan:
        graph = Graph(model, example, forward_fn)
        for step in plan:
            graph.apply(step)
    return model


def _check_runs(model: nn.Module, example: Tensor, forward_fn: ForwardFn | None) -> None:
    was_training = model.training
    try:
        with torch.no_grad():
            (forward_fn or (lambda m, x: m(x)))(model.eval(), example)
    except RuntimeError as e:
        raise CortexEdgeError(
            f"model no longer runs after structured pruning ({e}); its forward must read layer "
            "sizes from the layers (e.g. rnn.hidden_size), not from numbers stored at __init__"
        ) from None
    finally:
        model.train(was_training)
