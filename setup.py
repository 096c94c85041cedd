"""Only the optional C extension; everything else about the package is in pyproject.toml.

jwt_trust._speedups is the verifier's C parsing twin (jwt_trust._hotpath is the reference). It is
optional: without a compiler the install still succeeds and the library runs in pure Python, slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "jwt_trust._speedups",
            sources=["operator/jwt_trust/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
        )
    ]
)
