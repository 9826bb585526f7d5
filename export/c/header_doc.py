"""The top comment of decoder.h: what a firmware engineer needs without opening anything else.

Written once the build is measured (`document(header, meta, man)`): the sample period, the
input (shape, kind, accepted range, what happens outside it and to NaN), the outputs (names,
units; the integer scale), MACs per step, flash and RAM. The text comes from the decoder's
metadata contract and the manifest, so it cannot disagree with them.
"""

from __future__ import annotations

import textwrap

from cortexedge.contract import DecoderMetadata
from cortexedge.export.c.symbols import model_name

WIDTH = 92  # columns of the comment text


def _range(lo: float | None, hi: float | None) -> str:
    return f"[{'-inf' if lo is None else f'{lo:g}'}, {'+inf' if hi is None else f'{hi:g}'}]"


def _input(meta: DecoderMetadata, man: dict, p: str) -> list[str]:
    spec = meta.input
    shape = " x ".join(str(d) for d in spec.shape)
    lines = [f"Input: one bin of {shape} {spec.kind.replace('_', ' ')} per {p}_step call, "
             f"accepted range {_range(*spec.range)}."]  # fmt: skip
    refused = (
        f"a count above {p.upper()}_MAX_COUNT ({man['max_count']})"
        if man["numeric"] == "int"
        else "NaN, +-inf or a value outside that range"
    )
    lines.append(
        f"  {p}_step refuses {refused}: it returns 1 + the channel of the first such value and "
        "decodes nothing (state and out unchanged); 0 otherwise. This is defined behaviour for "
        "any bit pattern, and the runtime's backends (ort, numpy, c) refuse the same values "
        "of this folder's decoder.onnx."
    )
    return lines


def _outputs(meta: DecoderMetadata, man: dict, p: str) -> list[str]:
    names = ", ".join(f"{o.name} ({o.unit})" if o.unit else o.name for o in meta.outputs)
    lines = [f"Outputs: out[{len(meta.outputs)}] = {names}."]
    if man["numeric"] == "int":
        lines.append(f"  Integer build: int32 accumulators; y[d] = out[d] * "
                     f"{p.upper()}_OUTPUT_SCALES[d].")  # fmt: skip
    return lines


def _memory(man: dict) -> list[str]:
    mem, arm = man["memory"], man["memory"].get("cortex_m4") or {}
    chain = man["layout"].get("window_chain")
    how = (f"; the window of {chain['bins']} bins {chain['lag']} samples apart is computed as "
           "one chain step per bin, the chain states of the last "
           f"{chain['lag']} samples kept") if chain else ""  # fmt: skip
    lines = [f"MACs per step: {man['macs']['executed_per_step']:,} executed "
             f"(graph: {man['macs']['graph']['dense']:,} dense{how})."]  # fmt: skip
    if arm:
        lines.append(f"Flash (Cortex-M4, -O2): {arm['flash_bytes']:,} B = code "
                     f"{arm['code_bytes']:,} + constants {arm['weights_bytes']:,}.")  # fmt: skip
    else:
        lines.append(f"Flash: constants {mem['weights_bytes']:,} B (code not measured here).")
    ram = f"RAM: state {mem['state_bytes']:,} B (sizeof the state struct)"
    if mem.get("ram_bytes"):
        ram += f", stack measured under qemu {man['qemu']['stack_bytes']:,} B"
    elif mem.get("ram_bytes_bound"):
        ram += f", stack at most {arm['stack_bound_bytes']:,} B (-fstack-usage bound)"
    return [*lines, ram + "; no heap, no writable globals."]


def doc_lines(meta: DecoderMetadata, man: dict) -> list[str]:
    """The documentation lines of a measured build."""
    p = man["prefix"]
    mode = meta.streaming.mode
    window = f", a window of {meta.streaming.window} bins" if meta.streaming.window else ""
    return [
        f"{model_name(man['family'])} decoder, {man['numeric']} path, {mode} streaming{window}.",
        f"Sample period: {meta.bin_ms:g} ms (one {p}_step call per bin of that length).",
        *_input(meta, man, p),
        *_outputs(meta, man, p),
        *_memory(man),
        "",
        f"Usage: {p}_state_t s; {p}_init(&s); then per bin {p}_step(&s, bin, out);",
        f"{p}_reset(&s) at the start of a new recording. Link with decoder_weights.c"
        + ("." if man["numeric"] == "int" else " and -lm."),
    ]


def document(header: str, meta: DecoderMetadata, man: dict) -> str:
    """`header` (decoder.h) with its top comment rewritten from the measured build."""
    first, _, rest = header.partition("\n")
    _, _, code = rest.partition(" */\n")
    wrapped = []
    for line in doc_lines(meta, man):
        indent = " " * (len(line) - len(line.lstrip()))
        wrapped += textwrap.wrap(line, WIDTH, subsequent_indent=indent or "  ") or [""]
    body = "\n".join(f" * {line}".rstrip() for line in wrapped)
    return f"{first}\n * symbol prefix: {man['prefix']}\n *\n{body}\n */\n{code}"
