"""What the compression benchmarks share: the cached float AEGRU and its fine-tuned-alike baseline.

`compression_targets.py` and `compression.py` both compress one float AEGRU per recording; it is
trained once and cached in a work folder keyed by the recording's fingerprint and the training
settings, so later runs (and the other script) reload it instead of retraining.
"""

from __future__ import annotations

from pathlib import Path


def float_aegru(
    rec,
    work: str | Path,
    *,
    epochs: int,
    train_stride: int,
    seed: int,
    threads: int,
    data: dict | None = None,
    patience: int = 10,
):
    """Train the float AEGRU on `rec` (windowing `data`; weights initialised from `seed` too), or
    reload it from `work` when a run with the same recording and settings is cached there.
    Returns (model, config)."""
    import torch

    from cortexedge.train.checkpoint import load_checkpoint, read_config
    from cortexedge.train.fit import fit
    from cortexedge.train.models.aegru import AEGRU

    data = dict(data or {})
    tag = "".join(f"_{k}{v}" for k, v in sorted(data.items()))
    key = f"aegru_{rec.fingerprint()}{tag}_e{epochs}_p{patience}_s{train_stride}_seed{seed}"
    folder = Path(work) / key
    if (folder / "config.json").is_file():
        return load_checkpoint(folder)[0], read_config(folder)
    torch.manual_seed(seed)
    result = fit(
        AEGRU(rec.input_shape[0], out_dim=rec.y.shape[1], **data), rec, epochs=epochs,
        patience=patience, train_stride=train_stride, seed=seed, threads=threads,
        progress=False, data=data or None, out=folder,
    )  # fmt: skip
    return result.model, result.config


def float_finetuned(
    model,
    rec,
    *,
    epochs: int,
    lr: float,
    seed: int,
    train_stride: int,
    threads: int,
    data: dict | None = None,
) -> dict:
    """Metrics (val and test) of the float model fine-tuned like the compressed ones (MSE, same
    epochs and lr): a stricter baseline than the float model, since fine-tuning alone moves R²."""
    import torch.nn.functional as F

    from cortexedge.train.fit import fit

    run = fit(
        model.inference_module(), rec, epochs=epochs, lr=lr, seed=seed,
        train_stride=train_stride, threads=threads, progress=False, family="aegru",
        loss=F.mse_loss, patience=epochs + 1, data=data or None,
    )  # fmt: skip
    return run.metrics
