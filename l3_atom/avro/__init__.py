"""The Avro toolkit: schemas from ``static/schemas/``, the Confluent wire format, writers and readers.

``codecs`` loads schemas, registers them and frames values in the Confluent wire
format; ``writer`` and ``reader`` compile one encoder and decoder per schema
(``codegen`` is their shared code-generation scaffold); ``_avro_writer_c`` is the
optional C writer that ``writer`` falls back from.  Nothing here imports the rest
of ``l3_atom`` except the leaf error classes (``l3_atom.errors``): the connector,
processor, books, local runtime and bench all stand on it.
"""
