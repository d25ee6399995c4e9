"""Builds the C hot paths beside their Python references; ``pip install -r requirements.txt`` runs it (``-e .``).

The project runs from its source tree: the editable install points at it
and compiles ``l3_atom/avro/_avro_writer_c`` (the Avro writer),
``l3_atom/stream_processing/_levels_c`` (the loop of ``records_build.book_levels``) and
``l3_atom/books/_top_text_c`` (the text of Kraken's checksum) in place.  All are optional: without a C compiler the install goes on and
the pure-Python references serve instead.
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
        ),
        Extension(
            "l3_atom.stream_processing._levels_c",
            sources=["l3_atom/stream_processing/_levels_c.c"],
            optional=True,
        ),
        Extension(
            "l3_atom.books._top_text_c",
            sources=["l3_atom/books/_top_text_c.c"],
            optional=True,
        ),
    ],
)
