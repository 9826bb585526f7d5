"""Compiling generated decoders: host shared library, Cortex-M4 objects, sizes.

- `host_library(folder)`: the system C compiler builds decoder.c + decoder_weights.c +
  decoder_host.c (+ decoder_host_py.c, the runtime's fast path, when Python's and numpy's
  headers are installed) into the shared library the runtime's "c" backend loads, with the
  strict flags (C99, -Wall -Wextra -Werror -pedantic) and `host_flags` (-O3 and, where the
  CPU has it, -march=x86-64-v3).
- `sanitized_run(folder, rows)`: the same sources plus a small main, built with
  AddressSanitizer and UBSan (`-fsanitize=address,undefined -fno-sanitize-recover=all`) and
  run as a separate process (a sanitized library cannot be loaded into Python); any report
  or a non-zero exit raises CortexEdgeError with the sanitizer's first lines.
- `arm_objects(folder)`: arm-none-eabi-gcc for Cortex-M4 (hard float, -O2, the same strict
  flags) and `arm-none-eabi-size` of each object: code (decoder.o .text) and constant data
  (decoder_weights.o .text + .rodata) are the flash figures, .data/.bss (writable globals)
  must be empty; sizeof(decoder_state_t) on the target (a probe object's .bss) and an upper
  bound of decoder_step's stack (-fstack-usage, `stack_bound`).
Missing tools raise `ToolMissing` (a CortexEdgeError) naming the tool, so callers can skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

from cortexedge.errors import CortexEdgeError
from cortexedge.export.c import symbols
from cortexedge.runtime.backends.c import host_isa

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
DEVICE_SOURCES = ("decoder.c", "decoder_weights.c")
HOST_SOURCES = (*DEVICE_SOURCES, "decoder_host.c")
PYTHON_SOURCE = "decoder_host_py.c"  # the runtime's fast path, when Python's headers are there
CORTEX_M4 = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
ARM_GCC, ARM_SIZE = "arm-none-eabi-gcc", "arm-none-eabi-size"
LIBGCC_STACK = 64  # allowance for libgcc's 64-bit division helpers (not in -fstack-usage)
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


class ToolMissing(CortexEdgeError):
    """A compiler or emulator needed for this step is not installed."""


def tool(name: str) -> str:
    """Path of an executable on PATH, or ToolMissing naming it."""
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} is not installed (needed to build or run the C decoder)")
    return path


def host_compiler() -> str:
    """The system C compiler: $CC, else cc, else gcc."""
    for name in filter(None, (os.environ.get("CC"), "cc", "gcc")):
        if shutil.which(name):
            return shutil.which(name)
    raise ToolMissing("no C compiler found (set CC, or install cc/gcc)")


def run(cmd: list[str], cwd: Path, what: str) -> str:
    """Run a build command; CortexEdgeError with the compiler's first lines on failure."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[:12])
        raise CortexEdgeError(f"{what} failed:\n{detail}")
    return proc.stdout


def host_flags(opt: str = "-O3") -> list[str]:
    """Host optimisation flags: `opt` (-O3 vectorizes the generated loops), for the
    x86-64-v3 level when this CPU has it (`host_isa`; the manifest records it), and
    -fno-trapping-math, which lets the gate loops (compare-and-select clamps, floorf) vectorize:
    it drops the promise to raise floating-point exception flags exactly, and nothing reads
    them; every value stays the same."""
    isa = host_isa()
    return [opt, "-fno-trapping-math", *([f"-march={isa}"] if isa else [])]


def python_includes() -> list[str] | None:
    """-isystem flags for Python's and numpy's headers, or None when either is missing (the
    host library is then built without its Python entry point, decoder_host_py.c)."""
    dirs = [sysconfig.get_paths()["include"], np.get_include()]
    needed = [Path(dirs[0], "Python.h"), Path(dirs[1], "numpy", "arrayobject.h")]
    if not all(p.is_file() for p in needed):
        return None
    return [flag for d in dirs for flag in ("-isystem", d)]


def host_library(folder: str | os.PathLike, name: str = "libdecoder.so") -> Path:
    """Compile the generated sources in `folder` into a shared library; returns its path.
    With `python_includes`, the library also holds the runtime's Python fast path."""
    folder = Path(folder)
    cc = host_compiler()
    out = folder / name
    tmp = folder / f".{name}.tmp"
    flags = [*STRICT, *host_flags(), "-fPIC", "-shared"]
    py = python_includes()
    sources = [*HOST_SOURCES, *([PYTHON_SOURCE, *py] if py else [])]
    run([cc, *flags, *sources, "-o", tmp.name, "-lm"], folder, "host C build")
    os.replace(tmp, out)
    return out


SANITIZED_MAIN = r"""
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include "decoder.h"
long decoder_host_run(decoder_state_t *s, long batch, const float *x, long n, float *y,
                      decoder_output_t *raw, float *history, long rows, long *pos, float lo,
                      float hi);
int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 0, pos = 0;
    float *x = malloc(sizeof(float) * (size_t)(n * DECODER_CHANNELS));
    float *y = malloc(sizeof(float) * (size_t)(n * DECODER_OUTPUTS));
    decoder_output_t *raw = malloc(sizeof(decoder_output_t) * (size_t)(n * DECODER_OUTPUTS));
    float *history = malloc(sizeof(float) * DECODER_CHANNELS);
    decoder_state_t *s = malloc(sizeof(decoder_state_t)); /* exactly one struct: overruns trap */
    FILE *f = fopen("sanitize_in.bin", "rb");
    if (!x || !y || !raw || !history || !s || !f
        || fread(x, sizeof(float) * DECODER_CHANNELS, (size_t)n, f) != (size_t)n) {
        return 2;
    }
    fclose(f);
    decoder_init(s);
    if (decoder_host_run(s, 1, x, n, y, raw, history, 1, &pos, -FLT_MAX, FLT_MAX) != -1) {
        return 3;
    }
    f = fopen("sanitize_out.bin", "wb");
    fwrite(raw, sizeof(decoder_output_t) * DECODER_OUTPUTS, (size_t)n, f);
    fclose(f);
    free(x); free(y); free(raw); free(history); free(s);
    return 0;
}
"""


def sanitized_run(folder: str | os.PathLike, rows: np.ndarray, raw_dtype) -> np.ndarray:
    """Run the decoder on rows [T, C] in an ASan + UBSan build; returns its raw outputs [T, D]."""
    folder = Path(folder)
    cc = host_compiler()
    work = folder / "sanitize"
    work.mkdir(exist_ok=True)
    (work / "main.c").write_text(symbols.for_folder(SANITIZED_MAIN, folder))
    srcs = [str(folder / s) for s in HOST_SOURCES]
    run([cc, "-std=c99", "-O1", "-g", *SANITIZE, "-I", str(folder), "main.c", *srcs, "-o",
         "decoder_sanitized", "-lm"], work, "sanitized host build")  # fmt: skip
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    rows.tofile(work / "sanitize_in.bin")
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}  # fmt: skip
    proc = subprocess.run([str(work / "decoder_sanitized"), str(len(rows))], cwd=work,
                          capture_output=True, text=True, env=env)  # fmt: skip
    if proc.returncode != 0 or "runtime error" in proc.stderr or "Sanitizer" in proc.stderr:
        detail = "\n".join(proc.stderr.strip().splitlines()[:12])
        raise CortexEdgeError(f"sanitized run failed ({proc.returncode}):\n{detail}")
    return np.fromfile(work / "sanitize_out.bin", dtype=raw_dtype).reshape(len(rows), -1)


def sanitizers_available() -> bool:
    """True when the host compiler can build and run an ASan + UBSan program."""
    try:
        cc = host_compiler()
    except ToolMissing:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "t.c").write_text("int main(void) { return 0; }\n")
        build = subprocess.run([cc, *SANITIZE, "t.c", "-o", "t"], cwd=tmp, capture_output=True)
        return build.returncode == 0 and subprocess.run([str(Path(tmp) / "t")]).returncode == 0


def arm_objects(folder: str | os.PathLike, opt: str = "-O2") -> dict:
    """Cross-compile the device sources for Cortex-M4; sizes in bytes from arm-none-eabi-size."""
    folder = Path(folder)
    gcc, size = tool(ARM_GCC), tool(ARM_SIZE)
    build = folder / "arm"
    build.mkdir(exist_ok=True)
    sizes = {}
    for src in DEVICE_SOURCES:
        obj = build / src.replace(".c", ".o")
        flags = [
            *STRICT,
            opt,
            *CORTEX_M4,
            "-ffunction-sections",
            "-fdata-sections",
            "-fstack-usage",
        ]
        run([gcc, *flags, "-c", src, "-o", str(obj)], folder, f"Cortex-M4 build of {src}")
        sizes[src] = section_sizes(run([size, "-A", str(obj)], folder, "arm-none-eabi-size"))
    probe = build / "probe.c"
    probe_c = '#include "decoder.h"\ndecoder_state_t probe_state;\n'
    probe.write_text(symbols.for_folder(probe_c, folder))
    run([gcc, *STRICT, opt, *CORTEX_M4, "-I", str(folder), "-c", str(probe), "-o",
         str(build / "probe.o")], folder, "Cortex-M4 state probe")  # fmt: skip
    state = section_sizes(run([size, "-A", str(build / "probe.o")], folder, "arm-none-eabi-size"))
    code, data = sizes["decoder.c"], sizes["decoder_weights.c"]
    return {
        "state_bytes": state["bss"] + state["data"],
        "stack_bound_bytes": stack_bound(build / "decoder.su", symbols.prefix_of(folder)),
        "code_bytes": code["text"] + code["rodata"],
        "weights_bytes": data["text"] + data["rodata"],
        "flash_bytes": code["text"] + code["rodata"] + data["text"] + data["rodata"],
        "data_bytes": code["data"] + data["data"],
        "bss_bytes": code["bss"] + data["bss"],
        "sections": sizes,
    }


def stack_bound(su_file: Path, prefix: str = "decoder") -> int:
    """Upper bound of <prefix>_step's stack from gcc -fstack-usage: the sum of the frames of
    every function that the step can reach (all but the other entry points), plus
    LIBGCC_STACK for the runtime library's division helpers. The code has no recursion and no
    variable-length arrays, so no call chain holds a frame twice."""
    total, entry_points = LIBGCC_STACK, (f"{prefix}_reset", f"{prefix}_init")
    for line in su_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        if parts[2] != "static":
            raise CortexEdgeError(f"{su_file.name}: {parts[0]} has a {parts[2]} stack frame")
        if parts[0].rsplit(":", 1)[-1] not in entry_points:
            total += int(parts[1])
    return total


def section_sizes(size_a_output: str) -> dict[str, int]:
    """Sum `size -A` rows into text / rodata / data / bss (sub-sections by prefix)."""
    out = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for line in size_a_output.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        for kind in out:
            if parts[0] == f".{kind}" or parts[0].startswith(f".{kind}."):
                out[kind] += int(parts[1])
    return out
