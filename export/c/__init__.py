"""C99 code generation for implant-class microcontrollers (float and integer paths).

- `generate.py`: `export_c`, the whole export (emit, build, verify, measure, write the folder)
- `model_ir.py`: the layer IR read from torch decoders (unsupported layers named), float IR
- `int_extract.py`: brevitas QAT model -> integer IR (cortexedge.runtime.int_reference)
- `emit_float.py`, `emit_int.py` (+ `int_templates.py`): per-layer C emitters (registries)
- `emit_common.py`, `program.py`: API header, state struct, streaming driver, host shim, MACs
- `sparse.py`: dense or CSR storage per matrix
- `build.py`, `qemu.py`: host / sanitized / Cortex-M4 builds, sizes, the qemu harness
- `verify_c.py`, `readme.py`: checks against onnxruntime and the reference; README.md
"""
