# L3 Atom: one image for every role (connector, processor, consume, registry).
FROM python:3.11-slim

WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY runner.py config.ini ./
COPY l3_atom ./l3_atom
COPY static ./static
RUN mkdir -p keys

ENTRYPOINT ["python", "runner.py"]
CMD ["--help"]
