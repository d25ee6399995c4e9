"""Fault scenario ``broker_restart``: the broker is SIGKILLed mid-run and started again on the same port.

Tansu in memory mode keeps nothing, so the new broker has no topics, no
committed offsets, no consumer groups.  What each role does (measured here):

* connector and processor workers notice the broker's death through an idle
  connection it closes (``l3_atom/topic_watch.py``: the local profile says the
  broker keeps its data in memory only), log one line saying so and exit with
  ``EXIT_BROKER_LOST`` (75).  Before that fix neither exited with a reason:
  mostly both stayed up with nothing flowing (the processor saying nothing,
  the connector reading the exchange while its deliveries failed, "Purged in
  queue", until its full producer queue blocked it), now and then one died
  with exit 1 (Faust: "Event loop is closed").  A check of the topics every few seconds was not
  enough: a worker that wrote changelog records into the new broker before it
  noticed left a partition whose high watermark Tansu reported as 1 with no
  record to read, and its successor waited for ever to restore its tables;
* the schema registry keeps serving the schemas it holds in memory (its
  ``_schemas`` topic is gone with the rest: a registry restarted now would
  start empty);
* a supervisor starts the two roles again (here the scenario does, as
  docker-compose's ``restart: unless-stopped`` would): they create the topics,
  the connector takes a fresh book snapshot, and everything the exchange sends
  from then on is delivered, once.

What is lost: everything the old broker held (all topics, offsets, groups),
and what the exchange sent from the kill until the new connector connected.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.fault_full_disk import SYMBOLS, scale_name
from l3_atom.topic_watch import EXIT_BROKER_LOST

if TYPE_CHECKING:  # bench.faults imports this module to register it
    from bench.faults import Outcome, Scale

OUTPUT_TOPICS = ["lob_l3", "trades_l3", "ticker", "dead_letter"]
RESTARTS = {"smoke": 1, "quick": 2, "full": 3}
# The broker stays dead this long before it is started again (the roles see a refused connection first).
DEAD_S = 2.0
EXIT_TIMEOUT_S = 90.0
# A worker started on a broker that has just come back joins a new group and creates its topics: on a
# loaded machine that takes longer than a first start (CI once saw more than 60 s).
RESTART_READY_TIMEOUT_S = 180.0
READ_TIMEOUT_S = 120.0
SETTLE_S = 3.0
FIRST_RECORDS = 50
ROLES = ("connector", "processor")
LOST_LINE = re.compile(r"(?:no longer has topic\(s\)|refuses new ones)[^\n]*exiting with code \d+")


def journal_lines(journal: Path) -> int:
    with journal.open("rb") as file:
        return sum(1 for _ in file)


def journal_tail(journal: Path, start: int, out: Path) -> Path:
    """The journal from line ``start`` on: what the simulator sent to the connector started then."""
    with journal.open() as source:
        out.write_text("".join(line for index, line in enumerate(source) if index >= start))
    return out


def wait_exit(proc: object, timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return proc.poll()


def broker_restarts(scale: Scale, workdir: Path) -> Outcome:
    """Kill the broker, start it again on its port, watch each role, restart them as a supervisor would."""
    from bench.faults import Outcome, delivery, journal_gaps, read_from, stop_flow
    from l3_atom.infra.local_pipeline import LocalPipeline
    from l3_atom.infra.processes import stop_process
    from tests.kafka_reader import TopicReader
    from tests.test_e2e_coinbase import expected_records, must_publish

    outcome = Outcome("broker SIGKILL and restart (memory mode)")
    pipeline = LocalPipeline(SYMBOLS, rate=scale.rate, seed=37, workers=1, workdir=workdir)
    cycles = []
    worker = 0
    with pipeline:
        reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, OUTPUT_TOPICS)
        try:
            reader.read_until(lambda records: len(records) >= FIRST_RECORDS, READ_TIMEOUT_S)
            for _ in range(RESTARTS[scale_name(scale)]):
                reader.read_until(lambda _: False, scale.between_faults_s)
                cycle = {"records_on_the_broker_before": len(reader.records)}
                reader.close()
                names = {"connector": "connector", "processor": f"processor{worker}"}
                logs = {role: pipeline.log_path(name).stat().st_size for role, name in names.items()}
                pipeline.broker.process.send_signal(signal.SIGKILL)
                pipeline.broker.process.wait()
                outcome.faults_injected += 1
                time.sleep(DEAD_S)
                pipeline.broker.start()
                restarted = time.monotonic()
                codes = {role: wait_exit(pipeline.processes[name], EXIT_TIMEOUT_S) for role, name in names.items()}
                said = {role: LOST_LINE.findall(read_from(pipeline.log_path(name), logs[role]).decode(errors="replace"))
                        for role, name in names.items()}
                cycle |= {"exit_codes": codes, "lines": {role: lines[:1] for role, lines in said.items()},
                          "registry_alive": pipeline.processes["registry"].poll() is None}
                outcome.faults_detected += all(codes[r] == EXIT_BROKER_LOST and said[r] for r in ROLES)
                # The supervisor: the same commands again, against the new broker.
                for name in names.values():
                    stop_process(pipeline.processes.pop(name))  # one that did not exit is stopped here
                worker += 1
                pipeline.start_worker(worker, timeout_s=RESTART_READY_TIMEOUT_S)
                started_at = journal_lines(pipeline.journal)
                pipeline.start_connectors()
                reader = TopicReader(pipeline.broker.bootstrap_servers, pipeline.registry_url, OUTPUT_TOPICS)
                if reader.read_until(lambda records: len(records) >= FIRST_RECORDS, READ_TIMEOUT_S):
                    outcome.recoveries += 1
                    outcome.recover_s.append(round(time.monotonic() - restarted, 2))
                cycles.append(cycle)
            stop_flow(pipeline)
            tail = journal_tail(pipeline.journal, started_at, workdir / "journal_after_restart.jsonl")
            total = must_publish(expected_records(tail), tail)
            reader.read_until(lambda records: len(records) >= total, READ_TIMEOUT_S)
            reader.read_until(lambda _: False, SETTLE_S)
            found = delivery(tail, reader.records)
        finally:
            reader.close()
        for name in pipeline.processes:
            pipeline.check_alive(name)
    outcome.expected = found["expected"]
    outcome.delivered = found["delivered"]
    lost_after = sum(len(v) for v in found["lost"].values())
    outcome.duplicated = sum(found["duplicated"].values())
    _, unheard, resynced, _ = journal_gaps(pipeline.journal)
    outcome.details |= {"cycles": cycles, "unexpected": found["unexpected"],
                        "exchange_messages_while_no_connector_ran": unheard,
                        "of_which_inside_a_resynced_gap": resynced,
                        "records_lost_with_the_broker": sum(c["records_on_the_broker_before"] for c in cycles),
                        "lost_examples": {k: [str(e) for e in v[:3]] for k, v in found["lost"].items() if v}}
    outcome.invariants["connector and processor exit with code 75 and say why, every restart"] = (
        outcome.faults_detected == outcome.faults_injected)
    outcome.invariants["restarted against the new broker, records flow again"] = (
        outcome.recoveries == outcome.faults_injected)
    outcome.invariants["the registry keeps running"] = all(c["registry_alive"] for c in cycles)
    outcome.invariants["after the last restart: 0 lost, 0 duplicated"] = (
        outcome.expected > 0 and lost_after == 0 and outcome.duplicated == 0)
    # As for exchange disconnects: what the exchange sent while no connector listened is lost upstream.
    outcome.lost = lost_after + unheard
    outcome.lost_inside_gaps = resynced
    outcome.invariants["what the exchange sent meanwhile lies inside a gap a new snapshot closed"] = unheard == resynced
    return outcome
