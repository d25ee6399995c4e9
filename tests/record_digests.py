"""Digests of every recording's encoded records, and the command that updates them (with a stated reason).

    .venv/bin/python -m tests.record_digests --reason "why the records change"

Each recording is captured by our connector from the replay server, put in the
recording's own order (snapshots last), run through ``RawMessageProcessor``
stamped with one fixed ``atom_timestamp``, and the encoded stream (topic, key,
Avro bytes of every record and dead letter) is hashed.  An optimisation must
leave every digest unchanged; a change of output updates them here, and the
reason is kept in the file's history.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import orjson

from bench.pure import encoders, recorded_traffic, records_digest

DIGESTS = Path(__file__).parent / "fixtures" / "record_digests.json"


def measured() -> dict[str, dict]:
    """recording folder -> its source, frame and record counts and the sha256 of its encoded records."""
    enc = encoders()
    found = {}
    for recorded in recorded_traffic():
        digest, records = records_digest(recorded.source, recorded.frames, enc)
        found[recorded.recording] = {
            "source": recorded.source, "frames": len(recorded.frames), "records": records, "sha256": digest,
        }
    return found


def committed() -> dict:
    return orjson.loads(DIGESTS.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reason", required=True, help="why the records change (kept in the file's history)")
    args = parser.parse_args(argv)
    previous = committed() if DIGESTS.exists() else {"history": []}
    found = measured()
    if not found:
        print("no recordings found: nothing to digest", file=sys.stderr)
        return 1
    history = [*previous["history"], {"date": datetime.date.today().isoformat(), "reason": args.reason}]
    DIGESTS.write_bytes(orjson.dumps({"history": history, "recordings": found}, option=orjson.OPT_INDENT_2) + b"\n")
    for recording, entry in found.items():
        changed = previous.get("recordings", {}).get(recording) != entry
        print(f"{recording}: {entry['records']} records, {entry['sha256'][:16]}{' (changed)' if changed else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
