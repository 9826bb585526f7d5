"""C99 code generation for implant-class microcontrollers (float and integer paths)."""
