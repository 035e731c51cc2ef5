"""Only the optional C extension; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "logpipe.process._fastparse",
            ["logpipe/process/_fastparse.c"],
            # a failed compile (no compiler, no Python headers) must not fail the install:
            # parse_text_chunk then runs its regex path
            optional=True,
        )
    ]
)
