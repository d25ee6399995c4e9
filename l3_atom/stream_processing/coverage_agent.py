"""``/coverage/{exchange}/{symbol}`` on the processor: where a symbol's data has holes.

An agent reads the ``coverage`` topic (the connectors' outages and backfills, the
standardisers' lost books) into a table keyed ``<source>_<symbol>``: each symbol's
recent coverage records, as JSON.  The table is changelogged, so a restarted or
reassigned worker still knows the holes of the past; coverage records are rare, so
each is written at once.  A query goes to the worker holding the symbol's partition
and is answered by the pure :func:`l3_atom.coverage.answer`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, View

from l3_atom.avro.codecs import decode_wire, parsed_schema
from l3_atom.coverage import RECORDS_PER_SYMBOL, answer
from l3_atom.stream_processing.batched_consumer import BatchingApp
from l3_atom.topics import COVERAGE

LOG = logging.getLogger(__name__)
COVERAGE_TABLE = "coverage_by_symbol"
MS_PER_S = 1000


class CoverageService:
    """Keeps each symbol's coverage records in a table and answers ``/coverage``."""

    def __init__(self, app: BatchingApp, schema_id: int, per_symbol: int = RECORDS_PER_SYMBOL):
        self.app = app
        self.per_symbol = per_symbol
        self.undecodable = 0
        schemas = {schema_id: parsed_schema(COVERAGE)}
        self.table = app.Table(COVERAGE_TABLE, default=lambda: None, key_type=bytes, value_type=bytes,
                               use_partitioner=True)

        async def keep_coverage(stream: faust.StreamT) -> None:
            async for batch in stream:
                for record in batch:
                    try:
                        self.add(record.key, decode_wire(record.value, schemas))
                    except (KeyError, ValueError, TypeError):
                        self.undecodable += 1  # another schema id or a malformed record: counted

        app.agent(app.batched_topic(COVERAGE), name="keep_coverage")(keep_coverage)
        app.page("/coverage/{exchange}/{symbol}")(self._view())

    def add(self, key: bytes, record: dict[str, Any]) -> None:
        records = self.records(key)
        records.append(record)
        self.table[key] = orjson.dumps(records[-self.per_symbol:])

    def records(self, key: bytes) -> list[dict[str, Any]]:
        return orjson.loads(self.table[key] or b"[]")

    def _view(self) -> type[View]:
        service = self

        class CoverageView(View):
            async def get(self, request: Request, exchange: str, symbol: str) -> Response:
                key = f"{exchange}_{symbol}".encode()
                try:
                    return await service.app.router.route_req(COVERAGE_TABLE, key, self.web, request)
                except SameNode:
                    pass
                result = answer(exchange, symbol, service.records(key), dict(request.query),
                                int(time.time() * MS_PER_S))
                return self.json(result.body, status=result.status)

        return CoverageView
