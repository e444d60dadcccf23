"""Headless Hearth: ``hearth run chat|image|video|music ...`` and ``hearth arbiter status``.

Runs through the same supervisor, worker processes and arbiter as the window; no Qt is
imported. Progress goes to stderr as a bar, chat tokens stream to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import stat
import sys
from pathlib import Path

from app.cli_brush import add_brush
from app.cli_cluster import add_cluster, add_cluster_option, run_cluster, transport_for
from app.cli_info import add_info
from app.cli_models import add_models
from app.cli_schema import add_options, given
from workers.atomic import check_writable
from workers.errors import BadInput
from workers.protocol import (
    ChatMessage,
    ChatRequest,
    ImageRequest,
    JobOrigin,
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
    add_brush(
        run.add_parser(
            "brush",
            help="the brush editor: start a project (--new) or add a layer (--mask)",
            description="Start a brush project with --new PROMPT, or add a layer to one with --mask.",
        )
    )
    for kind_parser in run.choices.values():
        add_cluster_option(kind_parser)
    add_cluster(
        commands.add_parser("cluster", help="Hearth on several machines (Ray): start, join, status, stop")
    )
    arbiter = commands.add_parser("arbiter", help="the VRAM arbiter").add_subparsers(
        dest="action", required=True
    )
    arbiter.add_parser("status", help="print the ledger of VRAM leases")
    _add_serve(commands.add_parser("serve", help="the local OpenAI-compatible API (headless)"))
    commands.add_parser("api-key", help="print the local API's key (made on first use)")
    add_models(commands.add_parser("models", help="the models here: list, scan, add, remove, info"))
    add_info(
        commands.add_parser("info", help="the generation parameters of an output (PNG, MP4, WAV, FLAC, ...)")
    )
    return parser


def _add_serve(p):
    from app.api.serve import DEFAULT_HOST, DEFAULT_PORT

    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}: "
        "this machine only; 0.0.0.0 opens it to the network)",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin allowed to call the API from a browser (repeatable; default none)",
    )
    p.add_argument(
        "--yield-to-window",
        action="store_true",
        help="run every API job in the background class, so work in a Hearth window always wins",
    )


def _add_image(p):
    p.add_argument("--prompt", required=True, help="what to make")
    add_options(p, ImageRequest)


def _add_chat(p):
    p.add_argument("--prompt", required=True, help="your message")
    p.add_argument("--system", default="", help="system prompt")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    add_options(p, ChatRequest)


def _add_video(p):
    p.add_argument("--prompt", required=True, help="what to make")
    add_options(p, VideoRequest)


def _add_music(p):
    p.add_argument("--prompt", required=True, help="what to make")
    add_options(p, MusicRequest)


def request_from_args(args: argparse.Namespace):
    """Build the typed request; ``validate()`` names any bad field before a worker starts.

    Options not given are left out, so the request keeps each field's declared default."""
    match args.kind:
        case "image" | "video" | "music":
            cls = {"image": ImageRequest, "video": VideoRequest, "music": MusicRequest}[args.kind]
            fields = given(args, cls)
            if cls is ImageRequest:
                fields = {**_made_for(fields.get("model", "")), **fields}  # what the user typed wins
            if fields.get("out_path"):
                fields["out_path"] = _checked_out(fields["out_path"])
            for picture in ("init_image", "image"):  # the worker may not share this folder (a cluster)
                if fields.get(picture):
                    fields[picture] = str(Path(fields[picture]).expanduser().absolute())
            request = cls(prompt=args.prompt, **fields)
        case "chat":
            messages = ((ChatMessage(role="system", content=args.system),) if args.system else ()) + (
                ChatMessage(role="user", content=args.prompt),
            )
            request = ChatRequest(messages=messages, stop=tuple(args.stop), **given(args, ChatRequest))
    request.validate()
    return request


def _made_for(model: str) -> dict:
    """The size, steps and guidance ``model``'s family is made for (an SDXL at 1024², Flux schnell
    in 4 steps), said on stderr; {} for the demo model and models whose files do not say."""
    from models.image_profile import describe_settings, recommended_profile, recommended_settings

    profile = recommended_profile(model) if model else None
    if profile is None:
        return {}
    print(f"hearth: {describe_settings(profile)} (used where not given)", file=sys.stderr)
    return recommended_settings(profile)


def _checked_out(out: str) -> str:
    return str(check_writable(Path(out)).resolve()) if out else ""


def main(argv: list[str]) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at interpreter exit
        return code
    except KeyboardInterrupt:  # before a job's signal handlers are in place, or after
        print("\nhearth: cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `hearth info F | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "api-key":
        from app.api.keys import api_key

        print(api_key())
        return EXIT_OK
    if args.command == "serve":
        from app.api.serve import serve

        return serve(args.host, args.port, args.cors_origin, args.yield_to_window)
    if args.command == "models":
        from app.cli_models import run_models

        return run_models(args)
    if args.command == "info":
        from app.cli_info import run_info

        return run_info(args)
    if args.command == "cluster":
        return run_cluster(args)
    if args.command == "arbiter":
        from workers.arbiter.status import print_status

        return print_status()
    if args.kind == "brush":
        return run_brush(args)
    try:
        request = request_from_args(args)
    except BadInput as exc:
        print(f"hearth: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_job(request, transport=transport_for(args.cluster, args.token_file))


class Interrupts:
    """Ctrl-C, a closed terminal (SIGHUP) or SIGTERM while ``hearth run`` works: the first cancels
    the job through the supervisor (it ends ``Cancelled``), the second stops the workers at once.

    The workers ignore these signals (``workers.runtime``): only this process decides. The handler
    only counts, wakes the main thread through the event queue (``SimpleQueue.put`` is reentrant)
    and, on the second signal, sends SIGTERM to the workers, which takes no lock.
    """

    SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)

    def __init__(self, events: queue.SimpleQueue) -> None:
        self.count = 0
        self.supervisor = None
        self._events = events
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def _on_signal(self, signum: int, frame) -> None:
        self.count += 1
        if signum == signal.SIGHUP:
            _leave_the_closed_terminal()
        if self.count >= 2 and self.supervisor is not None:
            self.supervisor.terminate_workers()
        self._events.put(INTERRUPTED)


INTERRUPTED = object()
"""Put on the event queue by a signal: the main thread looks at ``Interrupts.count``."""


def _leave_the_closed_terminal() -> None:
    """After a hang-up, writing to the terminal fails (EIO): what is left goes to /dev/null.

    A hung-up terminal no longer answers ``isatty``, so any character device is taken for it;
    pipes and files (``hearth run ... > out``) are kept.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    null_device = os.fstat(devnull).st_rdev
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            info = os.fstat(fd)
            if stat.S_ISCHR(info.st_mode) and info.st_rdev != null_device:
                os.dup2(devnull, fd)
    os.close(devnull)


def run_job(request, printer=None, transport=None) -> int:
    """Run one job through a supervisor of its kind; returns the exit code.

    ``transport``: None for local worker processes, a ``RayTransport`` for a cluster."""
    from app.cli_progress import JobPrinter
    from workers.supervisor import Supervisor

    printer = printer or JobPrinter(request)
    events: queue.SimpleQueue = queue.SimpleQueue()
    with Interrupts(events) as interrupts:
        supervisor = Supervisor(
            kinds=[request.kind], listener=events.put, restore_queue=False, transport=transport
        )
        interrupts.supervisor = supervisor
        try:
            printer.starting()
            supervisor.start()
            job_id = supervisor.submit(request, origin=JobOrigin.cli)
            return _follow(job_id, events, printer, supervisor, interrupts)
        finally:
            if interrupts.count >= 2:
                supervisor.stop_now()
            else:
                supervisor.shutdown()  # a second signal meanwhile terminates the workers


def run_brush(args: argparse.Namespace) -> int:
    """A brush job; a rendered layer is saved into the project once the worker has finished."""
    from app.cli_brush import plan_brush
    from app.cli_progress import JobPrinter

    try:
        plan = plan_brush(args)
    except BadInput as exc:
        print(f"hearth: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    printer = JobPrinter(plan.request)
    code = run_job(plan.request, printer, transport_for(args.cluster, args.token_file))
    if code != EXIT_OK:
        return code
    try:
        message = plan.finish(printer.outputs)
    except OSError as exc:
        print(f"hearth: error: could not save the project: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if message:
        print(f"hearth: {message}", file=sys.stderr)
    return code


def _follow(job_id: str, events: queue.SimpleQueue, printer, supervisor, interrupts: Interrupts) -> int:
    cancelling = False
    while True:
        if interrupts.count >= 2:
            return printer.stopped()
        if interrupts.count and not cancelling:
            cancelling = True
            printer.cancelling()
            supervisor.cancel(job_id)
        event = events.get()
        if event is INTERRUPTED or getattr(event, "job_id", job_id) != job_id:
            continue
        code = printer.show(event)
        if code is not None:
            return code
