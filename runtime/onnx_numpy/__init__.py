"""ONNX graphs on numpy: cortexedge's own ONNX engine, written from the operator specification
independently of onnxruntime (which the tests use as the referee).

- `opdef.py`: `OpDef`, everything the runtime knows about one op (reference kernel, in-place
  builder, shape facts, MAC rule); `registry.py`: `OPS`, the one table of them;
- `ops_*.py`: the ops, by kind (element-wise, shape, reductions, linear, GRU, LSTM,
  normalizations, quantization); `recurrent.py` what GRU and LSTM share;
- `reference.py`: the reference interpreter, which runs any graph of these ops and returns
  every tensor; `compiled.py`: the fast tier, the same graph bound to fixed arrays.

There are two engines over the same op definitions because neither covers the other's uses:
the fast tier needs every shape fixed by the input shapes (a graph that computes a shape from
values cannot be compiled), and it keeps only the outputs, while the MAC walker needs every
intermediate tensor. The fast tier also falls back to the reference kernel for any node its
in-place builders do not take, and the tests check the two against each other.
"""
