"""Count calls of the fused Triton kernel while a block runs (shared by the Triton and CUDA
tests)."""
import contextlib


@contextlib.contextmanager
def kernel_calls():
    """Yields a list that gains one entry per call of ``triton_spline.kan_layer_triton``."""
    from kanlab import triton_spline as ts

    calls = []
    orig = ts.kan_layer_triton

    def spy(*a, **kw):
        calls.append(1)
        return orig(*a, **kw)

    ts.kan_layer_triton = spy
    try:
        yield calls
    finally:
        ts.kan_layer_triton = orig
