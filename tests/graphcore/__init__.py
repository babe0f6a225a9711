"""Tests of Graphcore's popef and model_runtime modules over this library."""
