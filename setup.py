"""The compiled kernels of the lean serving path (everything else is in pyproject.toml).

The extension is optional: where it cannot be built (no C compiler), the package installs
without it and ``loopline.serve.inference`` uses its numpy path, which gives the same
probabilities. ``-ffp-contract=off`` keeps the compiler from fusing a multiply and an add
into one rounding, which would change the last bits of scores.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "loopline.serve._lean",
            sources=["src/loopline/serve/_lean.c"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
            optional=True,
        )
    ]
)
