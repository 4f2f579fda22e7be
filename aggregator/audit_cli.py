"""``python -m aggregator.audit``: verify an audit chain, read-only; print its head.

    verify PATH [--key-file K] [--anchor A] [--expect-head SEQ:HASH] [--no-anchor]
        Walks every file of the chain (closed segments PATH's-stem.segNNNNNN, then PATH)
        under the key, and checks the head against the anchor file and/or the head given.
        Opens everything read-only: running it changes nothing. Exit 0 holds, 1 does not.
    head PATH [--key-file K] [--anchor A]
        The anchored head as SEQ:HASH, to copy into a batch record or a ticket and pass to
        a later ``verify --expect-head``.

Defaults for --key-file and --anchor are the aggregator's (PATH with .key / .head.json).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from aggregator.audit import default_anchor, default_key_file, rotated_segments
from aggregator.audit_anchor import AnchorError, read_anchor
from aggregator.audit_chain import GENESIS_HASH, ChainReport, canonical_json, verify_paths


def _head(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise argparse.ArgumentTypeError(f"expected SEQ:HASH (64 hex digits), got {text!r}")
    return int(seq), digest


def _report(report: ChainReport) -> int:
    print(canonical_json(asdict(report)))
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aggregator.audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("verify", "head"))
    parser.add_argument("path", type=Path, help="the active audit file (var/audit/verdicts.sqlite3)")
    parser.add_argument("--key-file", type=Path, default=None)
    parser.add_argument("--anchor", type=Path, default=None)
    parser.add_argument("--expect-head", type=_head, default=None, help="SEQ:HASH recorded elsewhere")
    parser.add_argument("--no-anchor", action="store_true", help="do not check against the anchor file")
    args = parser.parse_args(argv)
    key_file = args.key_file or default_key_file(args.path)
    anchor_path = args.anchor or default_anchor(args.path)
    if not key_file.is_file():
        print(f"no audit key at {key_file} (pass --key-file)", file=sys.stderr)
        return 2
    key = bytes.fromhex(key_file.read_text().strip())
    try:
        anchored = None if args.no_anchor else read_anchor(anchor_path, key)
    except AnchorError as exc:
        return _report(ChainReport(False, 0, 0, GENESIS_HASH, None, str(exc)))
    if args.command == "head":
        if anchored is None:
            print(f"no anchor at {anchor_path}", file=sys.stderr)
            return 2
        print(f"{anchored.seq}:{anchored.row_hash}")
        return 0
    files = [*rotated_segments(args.path), *([args.path] if args.path.is_file() else [])]
    if not args.path.is_file():
        recorded = anchored.seq if anchored else (args.expect_head[0] if args.expect_head else None)
        if recorded is None and not files:
            print(f"no audit store at {args.path}", file=sys.stderr)
            return 2
        return _report(ChainReport(False, 0, 0, GENESIS_HASH, None,
                                   f"the active audit file {args.path} is missing; the chain is recorded up to seq "
                                   f"{recorded}: its records were lost or moved", len(files)))
    for expected in [h for h in (args.expect_head, None if anchored is None else (anchored.seq, anchored.row_hash))
                     if h is not None] or [None]:
        report = verify_paths(files, key, expected)
        if not report.ok:
            return _report(report)
    return _report(report)


if __name__ == "__main__":
    sys.exit(main())
