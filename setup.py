"""Build step for kanlab's optional native CPU kernels (src/kanlab/_native.cpp).

Everything else is in pyproject.toml. The extension is plain C++ (no PyTorch headers) and
``optional``: without a C++ compiler the install still succeeds and kanlab runs its pure-PyTorch
path (``kanlab.native.available()`` is then False).
"""
import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args = ["/O2", "/openmp"]
    link_args = []
elif sys.platform == "darwin":  # Apple clang has no -fopenmp by default
    compile_args = ["-O3", "-std=c++17", "-fno-trapping-math"]
    link_args = []
else:
    # -fno-trapping-math lets loops with clamps and floor vectorize (kanlab sets no FP traps;
    # NaN and Inf keep their IEEE meaning)
    compile_args = ["-O3", "-std=c++17", "-fno-trapping-math", "-fopenmp"]
    link_args = ["-fopenmp"]

setup(
    ext_modules=[
        Extension(
            "kanlab._native",
            sources=["src/kanlab/_native.cpp"],
            language="c++",
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            optional=True,
        )
    ]
)
