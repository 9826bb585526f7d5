"""Run a generated decoder on an emulated Cortex-M4 (qemu-system-arm, MPS2 AN386 board).

The harness (C strings below: vector table + reset handler, linker script, main) is linked with
the device sources and newlib's semihosting library (rdimon): it reads all raw samples from
`in.bin`, steps the decoder once per row, then writes the raw outputs to `out.bin` and prints
sizeof(decoder_state_t), the peak stack depth of decoder_step (stack painted with a pattern,
then scanned after the run; only decoder_step runs in between) and SysTick ticks per step.

Instructions: qemu runs with `-icount shift=0`, so virtual time advances 1 ns per executed
instruction and SysTick (25 MHz CPU clock on MPS2) ticks once per ~40 instructions. The
harness calibrates instructions per tick on a loop of known length (2 instructions per
iteration), so `insns_per_step` is measured, to within one tick (~40 instructions) per step.
Cycles are an estimate: instructions × CPI, with CPI 1.2–1.5 typical for this kind of
integer/load-heavy code on a Cortex-M4 with zero-wait-state memory (not emulated).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

from cortexedge.errors import CortexEdgeError
from cortexedge.export.c import symbols
from cortexedge.export.c.build import CORTEX_M4, DEVICE_SOURCES, STRICT, run, tool

QEMU = "qemu-system-arm"
BOARD = "mps2-an386"  # Cortex-M4 (qemu 7.2); mps2-an385 is the Cortex-M3 board
CPI_RANGE = (1.2, 1.5)
PAINT_BYTES = 32768

STARTUP = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
extern uint32_t __stack_top, __etext, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern void initialise_monitor_handles(void);
extern int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void _init(void);
void _fini(void);
void Default_Handler(void) { for (;;) { } }
void _init(void) { }
void _fini(void) { }
void Reset_Handler(void)
{
    *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20); /* CPACR: enable the FPU */
    __asm volatile("dsb\n isb");
    memcpy(&__data_start__, &__etext, (size_t)((char *)&__data_end__ - (char *)&__data_start__));
    memset(&__bss_start__, 0, (size_t)((char *)&__bss_end__ - (char *)&__bss_start__));
    initialise_monitor_handles();
    exit(main());
}
__attribute__((section(".vectors"), used)) void (*const vectors[16])(void) = {
    (void (*)(void))&__stack_top, Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, Default_Handler};
"""

LINKER = """
MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
         RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 4M }
ENTRY(Reset_Handler)
SECTIONS {
  .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) . = ALIGN(4); } > FLASH
  .ARM.exidx : { *(.ARM.exidx*) } > FLASH
  .init_array : { PROVIDE_HIDDEN(__init_array_start = .); KEEP(*(.init_array*));
                  PROVIDE_HIDDEN(__init_array_end = .); } > FLASH
  .preinit_array : { PROVIDE_HIDDEN(__preinit_array_start = .); KEEP(*(.preinit_array));
                     PROVIDE_HIDDEN(__preinit_array_end = .); } > FLASH
  .fini_array : { PROVIDE_HIDDEN(__fini_array_start = .); KEEP(*(.fini_array));
                  PROVIDE_HIDDEN(__fini_array_end = .); } > FLASH
  __etext = .;
  .data : AT(__etext) { __data_start__ = .; *(.data*) . = ALIGN(4); __data_end__ = .; } > RAM
  .bss (NOLOAD) : { __bss_start__ = .; *(.bss*) *(COMMON) . = ALIGN(4); __bss_end__ = .; } > RAM
  end = .; PROVIDE(_end = .); PROVIDE(__end__ = .);
  __stack_top = ORIGIN(RAM) + LENGTH(RAM);
}
"""

HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "decoder.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
#define PAINT 0xA5u

static decoder_state_t state;
static decoder_input_t bins[MAX_ROWS][DECODER_CHANNELS];
static decoder_output_t outs[MAX_ROWS][DECODER_OUTPUTS];

static uint32_t ticks_between(uint32_t a, uint32_t b) { return (a - b) & 0xFFFFFFu; }

static uint32_t calibrate(void)
{
    uint32_t n = 200000u, a, b;
    a = SYST_CVR;
    __asm volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc");
    b = SYST_CVR;
    return ticks_between(a, b); /* for 400000 instructions */
}

static uint8_t *stack_pointer(void)
{
    uint8_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

int main(void)
{
    FILE *f = fopen("in.bin", "rb");
    uint64_t total = 0;
    uint32_t most = 0, least = 0xFFFFFFFFu, rows, i, cal;
    volatile uint8_t *sp, *p;
    uint32_t depth;
    if (!f) {
        printf("harness: cannot open in.bin\n");
        return 2;
    }
    rows = (uint32_t)fread(bins, sizeof bins[0], MAX_ROWS, f);
    fclose(f);
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 5u; /* enable, CPU clock */
    cal = calibrate();
    decoder_init(&state);
    sp = stack_pointer();
    for (p = sp - PAINT_BYTES; p < sp - 64; ++p) {
        *p = PAINT;
    }
    for (i = 0; i < rows; ++i) { /* only decoder_step runs below the painted line */
        uint32_t a = SYST_CVR, t;
        decoder_step(&state, bins[i], outs[i]);
        t = ticks_between(a, SYST_CVR);
        total += t;
        most = t > most ? t : most;
        least = t < least ? t : least;
    }
    for (p = sp - PAINT_BYTES; p < sp && *p == PAINT; ++p) {
    }
    depth = (uint32_t)(sp - p);
    f = fopen("out.bin", "wb");
    if (!f || fwrite(outs, sizeof outs[0], rows, f) != rows) {
        printf("harness: cannot write out.bin\n");
        return 3;
    }
    fclose(f);
    printf("{\"rows\": %lu, \"ticks\": %lu, \"ticks_min\": %lu, \"ticks_max\": %lu, "
           "\"calibration_ticks\": %lu, \"calibration_insns\": 400000, \"state_bytes\": %lu, "
           "\"stack_bytes\": %lu}\n",
           (unsigned long)rows, (unsigned long)total, (unsigned long)least, (unsigned long)most,
           (unsigned long)cal, (unsigned long)sizeof(decoder_state_t), (unsigned long)depth);
    return 0;
}
"""


def firmware(work: Path, sources: list[Path], main: str, defines: list[str] = (),
             opt: str = "-O2") -> Path:  # fmt: skip
    """Link `sources` (each its own object, so two folders' decoder.c can meet) with the
    start-up code and `main` (C text) into work/firmware.elf for the MPS2 board."""
    gcc = tool("arm-none-eabi-gcc")
    work.mkdir(parents=True, exist_ok=True)
    (work / "startup.c").write_text(STARTUP)
    (work / "link.ld").write_text(LINKER)
    (work / "main.c").write_text(main)
    objs = []
    for k, src in enumerate(sources):
        obj = f"o{k}_{src.stem}.o"
        run([gcc, *STRICT, opt, *CORTEX_M4, "-I", str(src.parent), "-c", str(src), "-o", obj],
            work, f"Cortex-M4 build of {src.name}")  # fmt: skip
        objs.append(obj)
    includes = [f for d in dict.fromkeys(s.parent for s in sources) for f in ("-I", str(d))]
    cmd = [gcc, "-std=c99", opt, *CORTEX_M4, *defines, *includes, "--specs=rdimon.specs",
           "-nostartfiles", "-T", "link.ld", "startup.c", "main.c", *objs, "-lm", "-o",
           "firmware.elf"]  # fmt: skip
    run(cmd, work, "Cortex-M4 firmware link")
    return work / "firmware.elf"


def emulate(elf: Path, timeout: float = 300.0) -> str:
    """Run `elf` under qemu-system-arm (Cortex-M4, -icount: one instruction per ns) in its
    folder, with semihosting; returns its standard output."""
    qemu = tool(QEMU)
    cmd = [qemu, "-machine", BOARD, "-cpu", "cortex-m4", "-nographic", "-monitor", "none",
           "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
           "-kernel", elf.name]  # fmt: skip
    try:
        proc = subprocess.run(cmd, cwd=elf.parent, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise CortexEdgeError(f"qemu did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        raise CortexEdgeError(f"qemu run failed ({proc.returncode}): {proc.stdout[-400:]}")
    return proc.stdout


def run_harness(
    folder: str | os.PathLike, rows: np.ndarray, in_dtype: np.dtype, out_dtype: np.dtype,
    outputs: int, timeout: float = 300.0,
) -> dict:  # fmt: skip
    """Build and run the harness on `rows` [T, C] under qemu; outputs and measured figures."""
    folder = Path(folder)
    harness = symbols.for_folder(HARNESS.replace("PAINT_BYTES", str(PAINT_BYTES)), folder)
    work = folder / "qemu"
    elf = firmware(work, [folder / s for s in DEVICE_SOURCES], harness,
                   [f"-DMAX_ROWS={max(len(rows), 1)}"])  # fmt: skip
    np.ascontiguousarray(rows, dtype=in_dtype).tofile(work / "in.bin")
    stdout = emulate(elf, timeout)
    line = next((x for x in stdout.splitlines() if x.startswith("{")), None)
    if line is None:
        raise CortexEdgeError(f"qemu harness printed no figures: {stdout[-400:]}")
    stats = json.loads(line)
    out = np.fromfile(work / "out.bin", dtype=out_dtype).reshape(-1, outputs)
    insns_per_tick = stats["calibration_insns"] / max(stats["calibration_ticks"], 1)
    per_step = stats["ticks"] / max(stats["rows"], 1) * insns_per_tick
    return {
        "outputs": out,
        "rows": stats["rows"],
        "board": BOARD,
        "state_bytes": stats["state_bytes"],
        "stack_bytes": stats["stack_bytes"],
        "insns_per_tick": insns_per_tick,
        "insns_per_step": per_step,
        "insns_per_step_min": stats["ticks_min"] * insns_per_tick,
        "insns_per_step_max": stats["ticks_max"] * insns_per_tick,
        "cycles_per_step_estimate": [per_step * c for c in CPI_RANGE],
        "cpi_assumed": list(CPI_RANGE),
    }
