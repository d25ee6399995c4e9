# L3 Atom: one image for every role (connector, processor, consume, registry).
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

# requirements.txt ends with `-e .`, which compiles the C Avro writer in place (setup.py): the sources
# come first, and a C compiler is there for that step only.  The import fails the build if it was not made.
COPY requirements.txt setup.py pyproject.toml runner.py config.ini ./
COPY l3_atom ./l3_atom
COPY static ./static
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install -r requirements.txt \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python -c "import l3_atom.avro._avro_writer_c"
RUN mkdir -p keys

ENTRYPOINT ["python", "runner.py"]
CMD ["--help"]
