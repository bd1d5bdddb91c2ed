"""The compiled kernels of the lean serving path and of the lexicon scores (everything
else is in pyproject.toml).

The extensions are optional: where they cannot be built (no C compiler), the package
installs without them and ``loopline.serve.inference`` and ``loopline.train.text`` use their
numpy/Python code, which gives the same probabilities. ``-ffp-contract=off`` keeps the
compiler from fusing a multiply and an add into one rounding, which would change the last
bits of scores.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            f"loopline.{name}",
            sources=[f"src/loopline/{name.replace('.', '/')}.c"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
            optional=True,
        )
        for name in ("serve._lean", "train._lexicon")
    ]
)
