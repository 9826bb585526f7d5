"""Class 3, output paths and command mistakes: an output that is an input, a folder of the
user's own files, a run without --force, a missing folder, a bad option value.

Each command must exit 2 with one error line and leave every input and every file it did
not make exactly as it was.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.reliability.conftest import copy_of
from tests.reliability.outcomes import refused_cli

GROUP = "3 output paths"


def _user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    (folder / "decoder.h").write_text("/* my own header */")
    (folder / "figure.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))  # not profile's
    return folder


def _cases(c: SimpleNamespace) -> dict[str, tuple[list, tuple[Path, ...]]]:
    """name -> (arguments, paths that must not change), over the paths `c` names."""
    run, rec, onnx, mine, other, tmp_path = c.run, c.rec, c.onnx, c.mine, c.other, c.tmp
    missing = tmp_path / "no" / "such"
    return {
        "export_onto_recording": (["export", run, "--data", rec, "--out", rec], (rec, run)),
        "export_into_its_run": (["export", run, "--out", run / "model.safetensors"], (run,)),
        "export_onto_run_config": (["export", run, "--out", run / "config.json"], (run,)),
        "export_onto_run_folder": (["export", run, "--out", run, "--target", "c"], (run,)),
        "export_c_into_user_folder": (["export", run, "--out", mine, "--target", "c"], (mine, run)),
        "export_c_onto_a_file": (["export", run, "--out", mine / "notes.txt", "--target", "c"],
                                 (mine, run)),
        "export_from_missing_run": (["export", missing, "--out", tmp_path / "d.onnx"], ()),
        "export_bad_opset": (["export", run, "--out", tmp_path / "d.onnx", "--opset", 9], (run,)),
        "export_bad_target": (["export", run, "--out", tmp_path / "d", "--target", "tflite"],
                              (run,)),
        "export_onnx_onto_user_file": (["export", run, "--out", mine / "notes.txt"], (mine, run)),
        "export_bad_sparse": (["export", run, "--out", tmp_path / "c", "--target", "c",
                               "--sparse", "maybe"], (run,)),
        "export_bad_name": (["export", run, "--out", tmp_path / "c", "--target", "c",
                             "--name", "1 bad-name"], (run,)),
        "profile_json_onto_decoder": (["profile", onnx, "--synthetic", "--bins", 20,
                                       "--json", onnx], (onnx,)),
        "profile_plot_onto_recording": (["profile", onnx, "--data", rec, "--bins", 20,
                                         "--plot", rec], (onnx, rec)),
        "profile_json_in_missing_folder": (["profile", onnx, "--synthetic", "--bins", 20,
                                            "--json", missing / "p.json"], (onnx,)),
        "profile_json_onto_user_file": (["profile", onnx, "--synthetic", "--bins", 20,
                                         "--json", mine / "notes.txt"], (mine, onnx)),
        "profile_plot_onto_user_png": (["profile", onnx, "--synthetic", "--bins", 20,
                                        "--plot", mine / "figure.png"], (mine, onnx)),
        "profile_bad_backend": (["profile", onnx, "--synthetic", "--backend", "gpu"], (onnx,)),
        "profile_zero_bins": (["profile", onnx, "--synthetic", "--bins", 0], (onnx,)),
        "profile_missing_decoder": (["profile", missing / "d.onnx", "--synthetic"], ()),
        "compress_onto_its_run": (["compress", run, "--data", rec, "--out", run, "--bits", 8],
                                  (run, rec)),
        "compress_onto_another_run": (["compress", run, "--data", rec, "--out", other,
                                       "--bits", 8], (run, rec, other)),
        "compress_into_user_folder": (["compress", run, "--data", rec, "--out", mine,
                                       "--bits", 8], (run, rec, mine)),
        "compress_bad_bits": (["compress", run, "--data", rec, "--out", tmp_path / "w",
                               "--bits", 5], (run, rec)),
        "compress_bad_sparsity": (["compress", run, "--data", rec, "--out", tmp_path / "w",
                                   "--sparsity", 1.5], (run, rec)),
        "compress_bad_scope": (["compress", run, "--data", rec, "--out", tmp_path / "w",
                                "--sparsity", 0.5, "--scope", "everything"], (run, rec)),
        "compress_nothing_asked": (["compress", run, "--data", rec, "--out", tmp_path / "w"],
                                   (run, rec)),
        "train_into_existing_run": (["train", "--data", rec, "--model", "gru", "--out", run,
                                     "--quick"], (run, rec)),
        "train_into_user_folder": (["train", "--data", rec, "--model", "gru", "--out", mine,
                                    "--quick"], (mine, rec)),
        "train_onto_recording": (["train", "--data", rec, "--model", "gru", "--out", rec,
                                  "--quick"], (rec,)),
        "train_unknown_model": (["train", "--data", rec, "--model", "transformerxl", "--out",
                                 tmp_path / "r", "--quick"], (rec,)),
        "train_model_args_not_json": (["train", "--data", rec, "--model", "gru", "--model-args",
                                       "{hidden: 8", "--out", tmp_path / "r"], (rec,)),
        "train_model_args_a_list": (["train", "--data", rec, "--model", "gru", "--model-args",
                                     "[8]", "--out", tmp_path / "r"], (rec,)),
        "train_model_args_unknown_key": (["train", "--data", rec, "--model", "gru",
                                          "--model-args", '{"hiddn": 8}', "--out",
                                          tmp_path / "r", "--quick"], (rec,)),
        "train_missing_config": (["train", "--data", rec, "--model", "gru", "--config",
                                  missing / "c.toml", "--out", tmp_path / "r"], (rec,)),
        "train_zero_epochs": (["train", "--data", rec, "--model", "gru", "--epochs", 0,
                               "--out", tmp_path / "r"], (rec,)),
        "synth_onto_recording": (["data", "synth", "reaching", "--out", rec], (rec,)),
        "synth_in_missing_folder": (["data", "synth", "reaching", "--out", missing / "r.npz"],
                                    ()),
        "synth_onto_a_folder": (["data", "synth", "reaching", "--out", mine], (mine,)),
        "convert_onto_another_recording": (["data", "convert", rec, "--out", other / "r.npz"],
                                           (rec, other)),
        "synth_unknown_kind": (["data", "synth", "eeg", "--out", tmp_path / "r.npz"], ()),
        "convert_onto_its_input": (["data", "convert", rec, "--out", rec], (rec,)),
        "convert_unknown_format": (["data", "convert", rec, "--out", tmp_path / "r.npz",
                                    "--format", "edf"], (rec,)),
        "convert_bad_option": (["data", "convert", rec, "--out", tmp_path / "r.npz", "--option",
                                "no_equals_sign"], (rec,)),
    }  # fmt: skip


_NAMES = ("run", "rec", "onnx", "mine", "other", "tmp")
CASE_NAMES = sorted(_cases(SimpleNamespace(**{n: Path(n) for n in _NAMES})))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_a_mistaken_command_exits_2_and_changes_nothing(pipeline, tmp_path, case):
    copy = lambda src, *sub: copy_of(src, tmp_path.joinpath(*sub))  # noqa: E731
    paths = SimpleNamespace(run=copy(pipeline.run), rec=copy(pipeline.recording),
                            onnx=copy(pipeline.onnx), mine=_user_folder(tmp_path),
                            other=copy(pipeline.run, "other"), tmp=tmp_path)  # fmt: skip
    args, watch = _cases(paths)[case]
    refused_cli(GROUP, args, watch=watch)


@pytest.mark.parametrize("command", ("train", "compress"))
def test_force_replaces_the_run_and_keeps_the_users_files(pipeline, tmp_path, command):
    from tests.reliability.conftest import invoke

    mine = _user_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    args = {"train": ["train", "--data", pipeline.recording, "--model", "gru", "--quick",
                      "--model-args", '{"hidden": 8}'],
            "compress": ["compress", pipeline.run, "--data", pipeline.recording, "--bits", 8,
                         "--finetune-epochs", 0]}[command]  # fmt: skip
    invoke([*args, "--out", mine, "--force"])
    assert {n: (mine / n).read_bytes() for n in before} == before
    assert {"config.json", "model.safetensors"} <= {p.name for p in mine.iterdir()}


@pytest.mark.parametrize("command", ("export", "synth"))
def test_an_earlier_output_of_the_command_is_replaced(pipeline, tmp_path, command):
    """What the command wrote before may be written again: an export over an earlier export,
    a recording over a recording with --force."""
    from tests.reliability.conftest import invoke

    out = copy_of(pipeline.onnx if command == "export" else pipeline.recording, tmp_path)
    before = out.read_bytes()
    args = {
        "export": ["export", pipeline.run, "--out", out, "--opset", 18],
        "synth": ["data", "synth", "reaching", "--minutes", 0.25, "--out", out, "--force"],
    }
    invoke(args[command])  # fmt: skip
    assert out.read_bytes() != before and out.stat().st_size > 1000


def test_profile_replaces_its_own_summary_and_plot(pipeline, tmp_path):
    from tests.reliability.conftest import invoke

    outs = ["--json", tmp_path / "p.json", "--plot", tmp_path / "p.png"]
    args = ["profile", pipeline.onnx, "--data", pipeline.recording, "--bins", 200, *outs]
    invoke(args)
    before = (tmp_path / "p.json").read_bytes()
    invoke([*args, "--warmup", 10])
    assert (tmp_path / "p.json").read_bytes() != before
    assert b"cortexedge profile" in (tmp_path / "p.png").read_bytes()[:4096]
