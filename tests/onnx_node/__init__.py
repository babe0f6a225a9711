"""ONNX's node test suite run through ``popef.import_onnx`` on both built-in executors.

``python -m tests.onnx_node.update`` rewrites the committed expectations
(``tests/data/onnx_node_expected.json``) from a fresh run and prints the pass rate and the
missing ops by count.
"""
