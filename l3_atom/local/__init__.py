"""The one-process L3 Atom (``runner.py local``): connectors and standardisers on an in-memory bus.

Same connector code (``DataFeed``), same standardisers, same Avro validation
and dead-letter rule (``RawMessageProcessor``) as the distributed pipeline;
Kafka is replaced by bounded in-memory queues, and the normalised records go
to local outputs (stdout, JSON lines, hourly Avro or Parquet files, a
websocket stream).

    bus.py       the raw "topic" of one source: a bounded queue the connector writes frames to
    runtime.py   sources -> standardise -> fan out to outputs; stats; the HTTP app
    outputs/     stdout, jsonl, avro, parquet, websocket
    progress.py  the refreshing progress line and the final summary
    cli.py       ``runner.py local`` arguments
"""
