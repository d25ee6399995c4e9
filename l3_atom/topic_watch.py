"""Notices a broker that came back without the topics a role works on, and ends the role with one clear line.

A broker that is down or stalled is waited for: the clients buffer and
reconnect (the fault suite's broker-stall scenario).  A broker that answers
but no longer has the topics (a local Tansu restarted in memory mode, which
keeps nothing) is another matter: librdkafka and aiokafka wait for the topics
for ever, a connector's frames fail delivery, a processor waits silently with
offsets that no longer exist.  Each role therefore checks its topics every
``WATCH_INTERVAL_S`` and, when the broker answers without one of them, logs
why and exits with ``EXIT_BROKER_LOST``; a supervisor (``restart:
unless-stopped`` in docker-compose.yml) starts it again, and the new process
creates the topics and starts over on the new broker.

A broker that keeps its data in memory only (``broker_memory_only`` in the
profile: Tansu) is watched more closely, through an idle connection its
death closes at once: the role exits before a new broker is up.  Noticed
only later, a processor worker wrote table changelog records into the new
broker first (Faust's producer creates a topic as it writes), and Tansu then
reported a high watermark of 1 for a changelog partition it returned no
record of: the next worker waited for ever to restore its tables ("No event
received for active tp ... since recovery start").
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import NoReturn

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from l3_atom.config import KafkaSettings

LOG = logging.getLogger(__name__)
WATCH_INTERVAL_S = 5.0
METADATA_TIMEOUT_S = 5.0
# EX_TEMPFAIL (sysexits.h): a temporary failure, the caller is invited to retry (a supervisor restarts).
EXIT_BROKER_LOST = 75
EXITING = f"exiting with code {EXIT_BROKER_LOST} so that a restart creates the topics and starts over"
RECV_BYTES = 4096


def missing_topics(admin: AdminClient, names: Sequence[str]) -> list[str] | None:
    """The topics among ``names`` the broker does not have; None when it does not answer (down or stalled)."""
    try:
        topics = admin.list_topics(timeout=METADATA_TIMEOUT_S).topics
    except KafkaException:
        return None
    return [name for name in names if name not in topics]


def lost_line(role: str, bootstrap: str, missing: Sequence[str]) -> str:
    return (f"{role}: the broker at {bootstrap} answers but no longer has topic(s) {', '.join(missing)} "
            f"(restarted without its data?): what was on it is gone; {EXITING}")


def watch_topics(kafka: KafkaSettings, names: Sequence[str], role: str) -> threading.Thread:
    """Check ``names`` every ``WATCH_INTERVAL_S`` on a daemon thread; exit the process when the broker lost one.

    A thread, not a task: a connector whose producer queue is full blocks its event loop until the
    broker takes more (backpressure), and on a broker that lost the topic that is for ever.  A
    memory-only broker's link is watched on a thread of its own (:func:`_watch_link`).
    """
    if kafka.broker_memory_only:
        link = BrokerLink(kafka.bootstrap_servers)
        threading.Thread(target=_watch_link, args=(link, kafka.bootstrap_servers, role), name="l3_atom-broker-link",
                         daemon=True).start()
    thread = threading.Thread(target=_watch, args=(kafka, list(names), role), name="l3_atom-topic-watch", daemon=True)
    thread.start()
    return thread


def _watch(kafka: KafkaSettings, names: list[str], role: str) -> NoReturn:
    admin = AdminClient(kafka.client_config())
    while True:
        time.sleep(WATCH_INTERVAL_S)
        try:
            missing = missing_topics(admin, names)
        except Exception:  # the watch must outlive a failed check, or the role would never exit
            LOG.exception("%s: could not list the broker's topics; trying again", role)
            continue
        if missing:
            _exit(lost_line(role, kafka.bootstrap_servers, missing))


def _watch_link(link: BrokerLink, bootstrap: str, role: str) -> NoReturn:
    """Exit as soon as the broker's process is gone.

    Its own thread, waiting on nothing else: a broker restarted by a supervisor may be back in a
    couple of seconds, and a death noticed only after that (the topic check, waiting up to
    ``METADATA_TIMEOUT_S`` on the dead broker, used to share this thread) found a broker that
    answered, with the topics the clients had created on it again: the role never exited.
    """
    while True:
        try:
            died = link.died(WATCH_INTERVAL_S)
        except Exception:  # as in _watch: a failed check is not a reason to stop watching
            LOG.exception("%s: could not check the link to the broker; trying again", role)
            time.sleep(WATCH_INTERVAL_S)
            continue
        if died:
            _exit(f"{role}: the broker at {bootstrap} closed its connections and refuses new ones, "
                  f"and it keeps its data in memory only (broker_memory_only in the profile): what it held is gone; "
                  f"{EXITING}")


def _exit(line: str) -> NoReturn:
    LOG.error("%s", line)
    sys.stderr.flush()
    # Not SystemExit: the clients' own loops (Faust's, the producer's flush) would wait for the broker.
    os._exit(EXIT_BROKER_LOST)


class BrokerLink:
    """An idle TCP connection to the (first) bootstrap broker: its process dying closes it at once.

    A stalled broker (SIGSTOP) keeps it open; a broker that closes idle connections answers a new one.
    So "closed, and a new connection refused" means the broker process is gone.
    """

    def __init__(self, bootstrap_servers: str):
        host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
        self.address = (host, int(port))
        self.sock: socket.socket | None = socket.create_connection(self.address, timeout=METADATA_TIMEOUT_S)

    def died(self, wait_s: float) -> bool:
        """Wait up to ``wait_s`` for the connection to close; then whether the broker is gone."""
        if self.sock is None:  # the last new connection failed, but was not refused
            time.sleep(wait_s)
            return self._refused()
        readable, _, _ = select.select([self.sock], [], [], wait_s)
        if not readable:
            return False
        try:
            if self.sock.recv(RECV_BYTES):
                return False  # never sent anything, so nothing should come; not a death either
        except OSError:
            pass
        self.sock.close()
        self.sock = None
        return self._refused()

    def _refused(self) -> bool:
        """Connect again: whether the broker's address refused it (nothing listens there)."""
        try:
            self.sock = socket.create_connection(self.address, timeout=METADATA_TIMEOUT_S)
        except ConnectionRefusedError:
            return True
        except OSError as exc:  # e.g. a timeout: not known to be gone; the next check tries again
            LOG.warning("broker link: a new connection to %s:%d failed: %s", *self.address, exc)
        return False

