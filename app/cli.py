"""Headless Hearth: ``hearth run chat|image|video|music ...`` and ``hearth arbiter status``.

Runs through the same supervisor, worker processes and arbiter as the window; no Qt is
imported. Progress goes to stderr as a bar, chat tokens stream to stdout.
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
from pathlib import Path

from workers.atomic import check_writable
from workers.errors import BadInput
from workers.protocol import (
    ChatMessage,
    ChatRequest,
    ImageRequest,
    MusicRequest,
    VideoRequest,
)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description="Local generative AI on one GPU.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one job headless").add_subparsers(dest="kind", required=True)
    _add_image(run.add_parser("image", help="text to image"))
    _add_chat(run.add_parser("chat", help="one chat answer, streamed"))
    _add_video(run.add_parser("video", help="text to video"))
    _add_music(run.add_parser("music", help="text to music"))
    arbiter = commands.add_parser("arbiter", help="the VRAM arbiter").add_subparsers(
        dest="action", required=True
    )
    arbiter.add_parser("status", help="print the ledger of VRAM leases")
    return parser


def _add_common(p: argparse.ArgumentParser, out: bool = True) -> None:
    p.add_argument("--prompt", required=True)
    p.add_argument("--model", default=None, help="catalog id, hub id, local folder or file")
    p.add_argument("--seed", type=int, default=0)
    if out:
        p.add_argument("--out", default="", help="output file (default: the outputs folder)")


def _add_image(p):
    _add_common(p)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--guidance", type=float, default=7.5)


def _add_chat(p):
    _add_common(p, out=False)
    p.add_argument("--system", default="", help="system prompt")
    p.add_argument("--quant", default="auto", choices=["auto", "nf4", "fp4", "int8", "bf16", "fp16", "fp32"])
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--assisted", default="", help="'prompt_lookup' or a draft model for assisted decoding")
    p.add_argument("--allow-pickle", action="store_true", help="allow pickle (.bin/.pt) weights")


def _add_video(p):
    _add_common(p)
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--guidance", type=float, default=7.5)


def _add_music(p):
    _add_common(p)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--chords", default="")
    p.add_argument("--bpm", type=float, default=0.0)
    p.add_argument("--meter", default="4/4")


def request_from_args(args: argparse.Namespace):
    """Build the typed request; ``validate()`` names any bad field before a worker starts."""
    model = {"model": args.model} if args.model else {}
    match args.kind:
        case "image":
            request = ImageRequest(
                prompt=args.prompt,
                negative_prompt=args.negative_prompt,
                steps=args.steps,
                width=args.width,
                height=args.height,
                guidance=args.guidance,
                seed=args.seed,
                out_path=_checked_out(args.out),
                **model,
            )
        case "chat":
            messages = ((ChatMessage(role="system", content=args.system),) if args.system else ()) + (
                ChatMessage(role="user", content=args.prompt),
            )
            request = ChatRequest(
                messages=messages,
                quant=args.quant,
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=args.top_k,
                repetition_penalty=args.repetition_penalty,
                stop=tuple(args.stop),
                assisted=args.assisted,
                allow_pickle=args.allow_pickle,
                seed=args.seed,
                **model,
            )
        case "video":
            request = VideoRequest(
                prompt=args.prompt,
                negative_prompt=args.negative_prompt,
                frames=args.frames,
                fps=args.fps,
                steps=args.steps,
                width=args.width,
                height=args.height,
                guidance=args.guidance,
                seed=args.seed,
                out_path=_checked_out(args.out),
                **model,
            )
        case "music":
            request = MusicRequest(
                prompt=args.prompt,
                seconds=args.seconds,
                chords=args.chords,
                bpm=args.bpm,
                meter=args.meter,
                seed=args.seed,
                out_path=_checked_out(args.out),
                **model,
            )
    request.validate()
    return request


def _checked_out(out: str) -> str:
    return str(check_writable(Path(out)).resolve()) if out else ""


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "arbiter":
        from workers.arbiter.status import print_status

        return print_status()
    try:
        request = request_from_args(args)
    except BadInput as exc:
        print(f"hearth: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_job(request)


def run_job(request) -> int:
    from app.cli_progress import JobPrinter
    from workers.supervisor import Supervisor

    events: queue.Queue = queue.Queue()
    supervisor = Supervisor(kinds=[request.kind], listener=events.put, restore_queue=False)
    printer = JobPrinter(request)
    supervisor.start()
    job_id = supervisor.submit(request)
    previous = signal.signal(signal.SIGINT, lambda *_: supervisor.cancel(job_id))
    try:
        return printer.follow(job_id, events)
    finally:
        signal.signal(signal.SIGINT, previous)
        supervisor.shutdown()
