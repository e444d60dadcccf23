"""``hearth info FILE [--json]``: the generation parameters of any output, Hearth's or another app's.

Read by ``workers.generation_info`` (PNG text chunks, the sidecar JSON, MP4/GIF/WebP comments,
WAV/FLAC/OGG tags, A1111's ``parameters`` text); no Qt, no torch, no worker.
"""

from __future__ import annotations

import argparse
import json
import sys

from workers.errors import BadInput
from workers.generation_info import describe, read_info


def add_info(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE", help="a PNG, JPEG, WebP, MP4, GIF, WAV, FLAC, OGG or MP3 file"
    )
    parser.add_argument("--json", action="store_true", help="print the parameters as one JSON object")


def run_info(args: argparse.Namespace) -> int:
    """0 with the parameters printed; 2 with a message naming the problem when there are none."""
    from app.cli import EXIT_BAD_INPUT, EXIT_OK

    try:
        info = read_info(args.file)
    except BadInput as exc:
        print(f"hearth: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, MemoryError) as exc:
        print(f"hearth: error: {args.file} cannot be read ({exc})", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(info.to_json(), indent=2, sort_keys=True, default=str, ensure_ascii=False))
        return EXIT_OK
    print(f"file: {info.path}")
    for label, value in describe(info):
        print(f"{label}: {_one_line(value)}")
    return EXIT_OK


def _one_line(value: str) -> str:
    """A multi-line prompt stays one entry per label: its line breaks are shown as ``\\n``."""
    return value.replace("\r", "").replace("\n", "\\n")
