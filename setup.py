"""Builds the C Avro writer beside its Python reference; ``pip install -r requirements.txt`` runs it (``-e .``).

The project runs from its source tree: the editable install points at it
and compiles ``l3_atom/avro/_avro_writer_c`` in place.  The extension
is optional: without a C compiler the install goes on and
``writer.py`` uses the generated Python writer instead.
"""

from setuptools import Extension, find_packages, setup

setup(
    name="l3-atom",
    version="0.0.0",
    # The package itself, so that the editable install maps it whole (imports still resolve to this tree).
    packages=find_packages(include=["l3_atom", "l3_atom.*"]),
    ext_modules=[
        Extension(
            "l3_atom.avro._avro_writer_c",
            sources=["l3_atom/avro/_avro_writer_c.c"],
            optional=True,
        )
    ],
)
