"""``hearth models list|scan|add|remove|info``: the model registry from the command line (no Qt).

``scan`` finds the models already on this machine (the Hugging Face cache, ComfyUI, A1111/Forge,
InvokeAI, LM Studio, Ollama, or the folders named), identifies each from its headers and links
it in place; ``add`` links one file or folder; ``download`` fetches one from the Hugging Face hub
(resumable, verified) and links it; ``remove`` unlinks a linked model (the files stay) and
deletes one Hearth downloaded, after a confirmation naming the space freed; ``list`` and
``info`` show each model's kind, family, size and whether it fits this machine, per tier.
Reading the command line imports nothing heavy; the registry is opened only to run a command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from dataclasses import dataclass, field


def add_models(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every model Hearth knows of, with its fit verdict")
    listing.add_argument(
        "--kind", help="only this kind (chat, image, video, music, lora, vae, motion_adapter)"
    )
    scan = actions.add_parser(
        "scan",
        help="find the models on this machine and link them in place",
        description="Without PATH: the Hugging Face cache and the model folders of ComfyUI, A1111/Forge, "
        "InvokeAI, LM Studio and Ollama under your home folder. Nothing is copied or written there.",
    )
    scan.add_argument(
        "paths", nargs="*", metavar="PATH", help="a model file, a model folder or a folder of models"
    )
    scan.add_argument("--dry-run", action="store_true", help="list what is found without linking it")
    add = actions.add_parser("add", help="link one model file or folder in place (nothing is copied)")
    add.add_argument("path", metavar="PATH")
    download = actions.add_parser(
        "download",
        help="download a model from the Hugging Face hub and link it (resumes where it stopped)",
        description="Into the Hugging Face cache, safetensors rather than pickle files, each file checked "
        "against the hub's sha256. Ctrl-C stops it; running it again resumes where it stopped.",
    )
    download.add_argument("hub_id", metavar="HUB_ID", help="a hub repo id, like org/name")
    download.add_argument(
        "--include", default="", metavar="PATTERN", help="only weights matching this glob (one GGUF of many)"
    )
    download.add_argument("--revision", default="main", help="a branch, tag or commit (default main)")
    remove = actions.add_parser(
        "remove",
        help="unlink a model (its files stay); a model Hearth downloaded is deleted, freeing its disk",
    )
    remove.add_argument("id", metavar="ID")
    remove.add_argument("--yes", action="store_true", help="delete a downloaded model without asking")
    remove.add_argument("--keep-files", action="store_true", help="only unlink a downloaded model")
    info = actions.add_parser("info", help="one model: what it is, and each tier's memory and fit")
    info.add_argument("id", metavar="ID")
    for sub in (listing, scan, add, download, remove, info):
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        sub.add_argument("--budget", metavar="SIZE", help="device memory to judge fit against (e.g. 8GiB)")
        sub.add_argument("--ram", metavar="SIZE", help="system memory to judge CPU fit against (e.g. 32GiB)")


def run_models(args: argparse.Namespace) -> int:
    """Run one ``hearth models`` action; bad input is a message on stderr and exit code 2."""
    from app.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
    from models.registry import ModelRegistry
    from workers.errors import BadInput, HearthError, MissingModel

    try:
        budget = _budget(args)
        with ModelRegistry() as registry:
            actions = {"list": _list, "scan": _scan, "add": _add, "remove": _remove, "info": _info}
            actions["download"] = _download
            return actions[args.action](registry, args, budget) or EXIT_OK
    except (BadInput, MissingModel) as exc:
        print(f"hearth: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except HearthError as exc:  # a corrupt download
        print(f"hearth: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _budget(args: argparse.Namespace):
    from models.budget import machine_budget
    from workers.arbiter.units import parse_bytes
    from workers.errors import BadInput

    sizes = {}
    for option in ("budget", "ram"):
        text = getattr(args, option)
        try:
            sizes[option] = parse_bytes(text) if text is not None else None
        except ValueError as exc:
            raise BadInput(f"--{option}: {exc}", field=option) from None
    return machine_budget(sizes["budget"], sizes["ram"])


# --------------------------------------------------------------------------- actions


def _list(registry, args, budget) -> None:
    from models.identity import FoundKind
    from models.registry import builtin_models
    from workers.errors import BadInput

    try:
        kind = FoundKind(args.kind) if args.kind else None
    except ValueError:
        kinds = ", ".join(k.value for k in FoundKind if k is not FoundKind.unknown)
        raise BadInput(
            f"--kind {args.kind!r} is not a kind of model: use one of {kinds}", field="kind"
        ) from None
    builtins = [m for m in builtin_models() if kind is None or m.identity.kind is kind]
    models = builtins + registry.models(kind)
    _show(models, budget, args.json)


@dataclass
class ScanReport:
    """What one ``hearth models scan`` found: models (linked unless a dry run), files that are
    no model Hearth can use, and entries that could not be read."""

    models: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    unreadable: list = field(default_factory=list)
    new: int = 0


def _scan(registry, args, budget) -> None:
    from models.identity import FoundKind
    from models.scan import Found, scan

    report = ScanReport()
    for item in scan(args.paths):
        if not isinstance(item, Found):
            report.unreadable.append(item)
        elif item.identity.kind is FoundKind.unknown:
            report.skipped.append(item)
        elif args.dry_run:
            report.models.append(_unsaved(item))
        else:
            report.new += registry.get(item.candidate.location) is None
            report.models.append(registry.link(item.candidate, item.identity))
    if not args.paths and not args.dry_run:
        registry.rescan()  # what was linked before and has gone since shows as missing
    if args.json:
        print(json.dumps(_scan_json(report, budget), indent=2))
    else:
        _print_scan(report, budget, "found" if args.dry_run else "linked")


def _scan_json(report: ScanReport, budget) -> dict:
    return {
        "budget": _budget_json(budget),
        "models": [_model_json(m, budget) for m in report.models],
        "skipped": [{"where": s.candidate.location, "reason": s.identity.reason} for s in report.skipped],
        "unreadable": [{"where": u.where, "source": u.source, "reason": u.reason} for u in report.unreadable],
    }


def _print_scan(report: ScanReport, budget, verb: str) -> None:
    _table(report.models, budget)
    for item in report.skipped:
        print(f"skipped: {item.candidate.location}: {item.identity.reason}")
    for item in report.unreadable:
        print(f"unreadable: {item.where}: {item.reason}")
    print(
        f"hearth: {verb} {len(report.models)} model(s) ({report.new} new), {len(report.skipped)} skipped, "
        f"{len(report.unreadable)} unreadable",
        file=sys.stderr,
    )


def _add(registry, args, budget) -> None:
    model = registry.add(args.path)
    if args.json:
        print(json.dumps(_model_json(model, budget, tiers=True), indent=2))
        return
    print(f"linked {model.id}: {model.identity.kind.value} {model.identity.family} at {model.location}")
    _details(model, budget)


def _remove(registry, args, budget) -> int | None:
    from app.cli import EXIT_INTERRUPTED
    from workers.arbiter.units import format_bytes

    model = registry.get(args.id)
    if model is None or not model.downloaded or args.keep_files:
        model = registry.remove(args.id)
        if args.json:
            print(json.dumps({"removed": model.id, "location": model.location, "freed_bytes": 0}))
        else:
            print(f"unlinked {model.id}; its files are left where they are: {model.location}")
        return None
    size = format_bytes(registry.freed_by_delete(model))
    if not args.yes and not _confirm(f"Delete {model.name} ({model.id}) from disk, freeing {size}? [y/N] "):
        print("hearth: not deleted", file=sys.stderr)
        return EXIT_INTERRUPTED
    gone, freed = registry.delete_files(model.id)
    if args.json:
        print(json.dumps({"removed": model.id, "location": model.location, "freed_bytes": freed}))
    else:
        print(f"deleted {', '.join(m.id for m in gone)}: freed {format_bytes(freed)}")
    return None


def _confirm(question: str) -> bool:
    """Ask on the terminal; without one (a script) the answer is no: ``--yes`` says it."""
    from workers.errors import BadInput

    if not sys.stdin.isatty():
        raise BadInput(
            "deleting a downloaded model needs a yes: add --yes (or --keep-files to unlink)", field="yes"
        )
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _download(registry, args, budget) -> int | None:
    from app.cli import EXIT_INTERRUPTED
    from models.download import DownloadCancelled, check_disk, download, plan_download, register_download
    from models.hub_access import hub_session

    with hub_session():
        plan = plan_download(args.hub_id, revision=args.revision, include=args.include)
        check_disk(plan)
    bar = _ByteBar(plan)
    try:
        with hub_session(), _hang_up_cancels():
            download(plan, progress=bar.show)
    except (KeyboardInterrupt, DownloadCancelled):
        bar.close()
        print(
            f"hearth: cancelled; {bar.done_text()} kept: `hearth models download {plan.repo_id}` resumes",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    models = register_download(registry, plan)
    for name, why in plan.skipped:
        print(f"hearth: left out {name}: {why}", file=sys.stderr)
    if args.json:
        print(json.dumps({"models": [_model_json(m, budget) for m in models]}, indent=2))
    else:
        for model in models:
            print(
                f"downloaded {model.id}: {model.identity.kind.value} {model.identity.family} at {model.path}"
            )
            _details(model, budget)
    return None


@contextlib.contextmanager
def _hang_up_cancels():
    """A closed terminal (SIGHUP) or SIGTERM stops a download as Ctrl-C does: cleanly, its bytes kept."""

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _ByteBar:
    """A tqdm bar in bytes on stderr; a resumed download starts where it stopped."""

    def __init__(self, plan) -> None:
        self.total = plan.total_bytes
        self.done = 0
        self.bar = None
        self.stage = ""

    def show(self, state) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=state.total,
                initial=state.done,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                dynamic_ncols=True,
                desc="download",
            )
        self.bar.update(state.done - self.bar.n)
        self.done = state.done
        if state.stage != self.stage or state.file:
            self.stage = state.stage
            self.bar.set_description(
                state.stage if state.stage != "downloading" else "download", refresh=False
            )

    def done_text(self) -> str:
        from workers.arbiter.units import format_bytes

        return f"{format_bytes(self.done)} of {format_bytes(self.total)}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _info(registry, args, budget) -> None:
    from models.registry import builtin_models
    from workers.errors import MissingModel

    model = registry.get(args.id) or next((m for m in builtin_models() if m.id == args.id), None)
    if model is None:
        raise MissingModel(f"no model {args.id!r} (`hearth models list` shows the ids)")
    if args.json:
        print(json.dumps(_model_json(model, budget, tiers=True), indent=2))
        return
    print(f"{model.id}: {model.name}")
    _details(model, budget)


# --------------------------------------------------------------------------- output


def _unsaved(found):
    """A found model shown as the registry would hold it, without writing it (``--dry-run``)."""
    from models.registry import RegisteredModel, make_id

    candidate = found.candidate
    return RegisteredModel(
        id=make_id(candidate.name, candidate.location),
        name=candidate.name,
        location=candidate.location,
        path=str(candidate.path),
        source=candidate.source,
        hub_id=candidate.hub_id,
        identity=found.identity,
    )


def _show(models, budget, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {"budget": _budget_json(budget), "models": [_model_json(m, budget) for m in models]}, indent=2
            )
        )
    else:
        _table(models, budget)


def _table(models, budget) -> None:
    from workers.arbiter.units import format_bytes

    print(f"fit against {_describe_budget(budget)}")
    rows = [("ID", "KIND", "FAMILY", "PARAMS", "DTYPE", "SIZE", "FIT", "SOURCE", "NOTE")]
    for model in models:
        identity = model.identity
        rows.append(
            (
                model.id,
                identity.kind.value,
                identity.family or "-",
                _count(identity.parameters),
                identity.dtype or "-",
                format_bytes(identity.file_bytes) if identity.file_bytes else "-",
                _fit_words(model, budget),
                model.source,
                model.problem or identity.reason,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])


def _details(model, budget) -> None:
    from models.fit import tier_fits
    from workers.arbiter.units import format_bytes

    identity = model.identity
    lines = [
        ("kind", identity.kind.value),
        ("family", identity.family or "-"),
        ("format", identity.format),
        ("parameters", f"{identity.parameters:,}" if identity.parameters else "-"),
        ("dtype", identity.dtype or "-"),
        ("size", format_bytes(identity.file_bytes) if identity.file_bytes else "-"),
        ("location", model.location),
        ("source", model.source),
        ("runs", "yes" if identity.runnable else f"no: {identity.reason}"),
    ]
    if model.problem:
        lines.append(("problem", model.problem))
    lines.append(("fit", f"{_fit_words(model, budget)} (against {_describe_budget(budget)})"))
    for label, value in lines:
        print(f"  {label:<11}{value}")
    for tier in identity.tiers:
        need = format_bytes(tier.host_bytes if tier.on_cpu else tier.device_bytes)
        where = "system memory" if tier.on_cpu else "device"
        mark = "fits" if tier_fits(tier, budget) else "too big"
        print(f"  tier {tier.name:<12}{need:>10} of {where}, ~{tier.slowdown:g}x the fastest: {mark}")


def _fit_words(model, budget) -> str:
    from models.fit import judge

    if model.missing:
        return "missing"
    fit = judge(model.identity.tiers, budget)
    if fit is None:
        return "-"
    if fit.verdict.value in ("fits_reduced", "cpu_only"):
        return f"{fit.verdict.value} ({fit.tier}, ~{fit.slowdown:g}x slower)"
    return fit.verdict.value


def _model_json(model, budget, *, tiers: bool = False) -> dict:
    from models.fit import judge, tier_fits

    data = model.to_json()
    fit = None if model.missing else judge(model.identity.tiers, budget)
    data["fit"] = (
        None
        if fit is None
        else {
            "verdict": fit.verdict.value,
            "tier": fit.tier,
            "needs_bytes": fit.needs_bytes,
            "slowdown": fit.slowdown,
        }
    )
    if tiers:
        data["tiers"] = [{**tier.to_json(), "fits": tier_fits(tier, budget)} for tier in model.identity.tiers]
    else:
        data.pop("tiers", None)
    return data


def _budget_json(budget) -> dict:
    return {"device_bytes": budget.device_bytes, "host_bytes": budget.host_bytes}


def _describe_budget(budget) -> str:
    from workers.arbiter.units import format_bytes

    device = f"{format_bytes(budget.device_bytes)} of device memory" if budget.device_bytes else "no GPU"
    return f"{device}, {format_bytes(budget.host_bytes)} of system memory"


def _count(parameters: int) -> str:
    if not parameters:
        return "-"
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if parameters >= size:
            return f"{parameters / size:.{2 if parameters < 10 * size else 1}f}{unit}"
    return str(parameters)
