"""Tests of the runtime's operator library (popef.runtime.ops), one module per op family.

Every op is checked against an independent reference written differently from the kernel
(naive Python loops for Conv and the pools, Python-scalar arithmetic for elementwise ops, float64
formulas elsewhere), on random inputs with fixed seeds. ``run_op`` also checks, for every case,
that ``infer`` agrees with what ``run`` returns and that ``run`` leaves its (read-only) inputs
untouched. When onnx + onnxruntime are importable the same case table is replayed as one-node
ONNX models; when torch is importable Conv, the pools, Gemm and Softmax are compared with
torch.nn.functional.
"""
