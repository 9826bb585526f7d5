"""The C builds of every decoder family (part of benchmarks/c_target.py).

Every registered family at benchmark size and the four user-written decoders of tests/users
(imported as a user names them, `file.py:Class`), seeded initialisation (ridge and Kalman fitted
in closed form), each exported by `to_onnx` and built in C from that graph by `export_c`; the
GRU and LSTM decoders also as W8A8 integer C (the compress stage's post-training quantization):
- the C outputs against onnxruntime over 10,000 test bins (the build's own verification; for
  the integer builds, against the QCDQ graph, and bit for bit against the numpy integer
  reference over the same 10,000 bins);
- executed MACs per bin, flash (Cortex-M4 -O2), state and RAM bounds;
- Cortex-M4 instructions per bin and per executed MAC under qemu (--qemu-bins rows);
- host latency per bin through `StreamingDecoder.step`, c backend vs onnxruntime (p50 µs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
USERS = ROOT / "tests" / "users"
VERIFY_BINS = 10_000


def _user(ref: str, channels: int, outputs: int):
    from cortexedge.user_code import import_class, parse_ref

    return import_class(parse_ref(str(USERS / ref)))(channels, outputs)


def _w8a8(model, rec):
    """`model` quantized W8A8 as `cortexedge compress --bits 8` does it (post-training:
    calibrated on the training windows, no fine-tuning)."""
    from cortexedge.compress.recipe import Recipe, compress

    return compress(model, rec, Recipe(bits=8, finetune_epochs=0)).model


def _models(reaching, two_photon, aegru, stateful) -> dict:
    """name -> (model factory, recording, export options); `aegru` is c_target's trained AEGRU
    and `stateful` its weights in stateful mode (seeded initialisations of a stateful AEGRU
    carry float rounding too far for any float32 engine: the numpy backend differs from
    onnxruntime by 8.2e-6 over 10,000 bins on one, against the 1e-5 tolerance)."""
    from cortexedge.train.fit import fit
    from cortexedge.train.models.registry import build_model

    c, d = reaching.x.shape[1], reaching.y.shape[1]
    fitted = lambda name: fit(build_model(name, in_channels=c, out_dim=d), reaching,  # noqa: E731
                              progress=False).model  # fmt: skip
    rnn = lambda name: build_model(name, in_channels=c, hidden=64, out_dim=d)  # noqa: E731
    exact = {"reference_bins": VERIFY_BINS}
    return {
        "aegru window (trained)": (lambda: aegru, reaching, {}),
        "aegru stateful (trained weights)": (lambda: stateful, reaching, {}),
        "gru": (lambda: rnn("gru"), reaching, {}),
        "lstm": (lambda: rnn("lstm"), reaching, {}),
        "gru int8 (W8A8)": (lambda: _w8a8(rnn("gru"), reaching), reaching, exact),
        "lstm int8 (W8A8)": (lambda: _w8a8(rnn("lstm"), reaching), reaching, exact),
        "roi_gru": (lambda: build_model("roi_gru", in_channels=two_photon.x.shape[1],
                                        out_dim=two_photon.labels.shape[1]),
                    two_photon, {}),  # fmt: skip
        "ridge": (lambda: fitted("ridge"), reaching, {}),
        "kalman": (lambda: fitted("kalman"), reaching, {}),
        **{f"user {ref.split(':')[1]}": ((lambda r=ref: _user(r, c, d)), reaching, {})
           for ref in ("norm_gru.py:NormGRU", "plain_lstm.py:PlainLSTM",
                       "cell_stack.py:CellStack", "conv_gru.py:ConvGRU")},
    }  # fmt: skip


def _one(name: str, make, rec, opts: dict, work: Path, qemu_bins: int, latency_bins: int,
         latency) -> dict:  # fmt: skip
    import torch

    from cortexedge.export.api import to_onnx
    from cortexedge.export.c.generate import export_c

    torch.manual_seed(0)
    model = make().eval()
    folder = work / name.split(" (")[0].replace(" ", "-")
    onnx = work / f"{folder.name}.onnx"
    to_onnx(model, onnx, recording=rec)
    res = export_c(model, folder, onnx_path=onnx, recording=rec, verify_bins=VERIFY_BINS,
                   qemu_bins=qemu_bins, **opts)  # fmt: skip
    man = res.manifest
    mem, arm, q = man["memory"], man["memory"].get("cortex_m4") or {}, man.get("qemu") or {}
    macs = man["macs"]["executed_per_step"]
    rows = rec.x[rec.rows("test")][:latency_bins].astype(np.float32)
    path = folder / "decoder.onnx"
    insns = q.get("insns_per_step")
    return {
        "build": name, "verified_bins": man["verification"]["bins"],
        "bit_exact_bins": man["verification"].get("bit_exact_bins"),
        "max_abs_err_vs_onnx": man["verification"]["max_abs_err_vs_onnx"],
        "tolerance": man["verification"]["tolerance"], "macs_per_bin": macs,
        "flash_bytes": arm.get("flash_bytes"), "state_bytes": mem["state_bytes"],
        "ram_bytes": mem.get("ram_bytes") or mem.get("ram_bytes_bound"),
        "m4_insns_per_bin": insns, "m4_insns_per_mac": insns / macs if insns else None,
        "host_c_p50_us": latency(path, "c", rows)["p50_us"],
        "host_ort_p50_us": latency(path, "ort", rows)["p50_us"],
    }  # fmt: skip


def run(work: Path, qemu_bins: int, latency_bins: int, reaching, aegru, stateful,
        latency) -> list[dict]:  # fmt: skip
    """Build and measure every decoder; one row each. `latency(path, backend, rows)` is
    c_target's per-bin timing of `StreamingDecoder.step`."""
    from cortexedge.train.data.synth import generate

    # 30 Hz frames: a longer session, so the test split holds 10,000 frames
    two_photon = generate("two-photon", seed=0, minutes=30)
    rows = []
    (work / "families").mkdir(parents=True, exist_ok=True)
    for name, (make, rec, opts) in _models(reaching, two_photon, aegru, stateful).items():
        rows.append(_one(name, make, rec, opts, work / "families", qemu_bins, latency_bins,
                         latency))  # fmt: skip
        print(_line(rows[-1]), flush=True)
    return rows


def _fmt(v, spec: str = ",") -> str:
    return "—" if v is None else format(v, spec)


HEAD = ("build", "bins", "bit-exact bins", "max |C - ort|", "MACs/bin", "flash B", "state B",
        "RAM B", "M4 insns/bin", "insns/MAC", "c p50 µs", "ort p50 µs")  # fmt: skip


def _line(r: dict) -> str:
    return " | ".join([
        r["build"], _fmt(r["verified_bins"]), _fmt(r["bit_exact_bins"]),
        f"{r['max_abs_err_vs_onnx']:.2e}",
        _fmt(r["macs_per_bin"]), _fmt(r["flash_bytes"]), _fmt(r["state_bytes"]),
        _fmt(r["ram_bytes"]), _fmt(r["m4_insns_per_bin"], ",.0f"),
        _fmt(r["m4_insns_per_mac"], ".1f"), f"{r['host_c_p50_us']:.1f}",
        f"{r['host_ort_p50_us']:.1f}",
    ])  # fmt: skip
