"""The runtime: interprets a PopEF model's graph program with numpy kernels."""
