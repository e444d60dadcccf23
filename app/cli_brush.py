"""``hearth run brush``: the brush editor without the window.

``--new PROMPT --project FILE.hearth`` generates a base image and writes its project, the way the
editor's Generate button does; ``--project FILE.hearth --mask MASK.png --out OUT.png`` adds a
layer from the mask's white pixels, renders the composite, writes the PNG with its parameters
and saves the project. Both go through the same image worker (``BrushBaseRequest``,
``BrushRenderRequest``) and open projects with the same checked loader (``read_project``) as the
window. Every option's type, default and help are its request field's (``workers.schema``).
"""

from __future__ import annotations

import argparse
import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.cli_schema import add_option
from workers.atomic import check_writable
from workers.errors import BadInput
from workers.protocol import BRUSH_MERGE_STEPS, BrushBaseRequest, BrushLayer, BrushRenderRequest
from workers.schema import default_of

NEW_ONLY = ("negative_prompt", "size", "steps", "guidance", "model")
LAYER_ONLY = ("mask", "prompt", "strength", "regen_step", "out")


def add_brush(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", required=True, metavar="FILE.hearth", help="the brush project")
    new = p.add_argument_group("start a project (--new)")
    new.add_argument("--new", metavar="PROMPT", help="generate a base image from PROMPT into a new project")
    add_option(new, BrushBaseRequest, "negative_prompt")
    add_option(new, BrushBaseRequest, "width", flag="--size", help="width and height, a multiple of 8")
    add_option(new, BrushBaseRequest, "steps", help="N, the denoising steps of the cached trajectory")
    add_option(new, BrushBaseRequest, "guidance")
    add_option(new, BrushBaseRequest, "model")
    layer = p.add_argument_group("add a layer (--mask)")
    layer.add_argument(
        "--mask", metavar="MASK.png", help="white where the layer regenerates, black elsewhere"
    )
    add_option(layer, BrushLayer, "prompt")
    add_option(layer, BrushLayer, "strength")
    add_option(layer, BrushLayer, "regen_step", note="or N-3 if the project has fewer steps")
    layer.add_argument("--out", metavar="OUT.png", help="the composite (default: the brush-renders folder)")
    add_option(p, BrushBaseRequest, "seed", help="the base image's seed, or the layer's")


@dataclass
class BrushPlan:
    """What ``hearth run brush`` submits, and what it saves once the job has finished."""

    request: BrushBaseRequest | BrushRenderRequest
    finish: Callable[[list[str]], str] = lambda outputs: ""
    """Given the job's output paths, saves what the job leaves to the app; returns a message."""


def plan_brush(args: argparse.Namespace) -> BrushPlan:
    """Check everything before a worker starts; raises BadInput naming the problem."""
    if args.new is not None:
        _refuse(args, LAYER_ONLY, "--new")
        return _new_project(args)
    if args.mask is None:
        raise BadInput("give --new PROMPT to start a project, or --mask MASK.png to add a layer to one")
    _refuse(args, NEW_ONLY, "--mask")
    return _add_layer(args)


def _refuse(args: argparse.Namespace, names: tuple[str, ...], mode: str) -> None:
    given = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]
    if given:
        raise BadInput(f"{', '.join(given)} cannot be used with {mode}")


def _given(**fields) -> dict:
    """Only the options the user gave: the rest keep the protocol's defaults."""
    return {name: value for name, value in fields.items() if value is not None}


def _new_project(args: argparse.Namespace) -> BrushPlan:
    path = Path(args.project).expanduser()
    if path.suffix != ".hearth":
        raise BadInput(f"project file {path} must end in .hearth")
    if path.exists():
        raise BadInput(f"project {path} already exists; give a new file name (or --mask to add a layer)")
    size = _given(width=args.size, height=args.size)
    request = BrushBaseRequest(
        session_id=uuid.uuid4().hex[:12],
        prompt=args.new,
        project_path=str(check_writable(path).resolve()),
        **size,
        **_given(
            negative_prompt=args.negative_prompt,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            model=args.model,
        ),
    )
    request.validate()
    return BrushPlan(request=request)


def _add_layer(args: argparse.Namespace) -> BrushPlan:
    from workers.brushes.project_io import read_project

    path = Path(args.project).expanduser().resolve()
    project = read_project(path)  # the editor's checked loader: BadInput names what is wrong
    out = _checked_png(args.out) if args.out else ""
    width, height = project.size
    layer = BrushLayer(
        id=uuid.uuid4().hex[:12],
        mask_png=mask_png(args.mask, project.size),
        name=f"Layer {len(project.layers) + 1}",
        regen_step=args.regen_step if args.regen_step is not None else _default_regen_step(project.steps),
        **_given(prompt=args.prompt, strength=args.strength, seed=args.seed),
    )
    request = BrushRenderRequest(
        session_id=project.session_id,
        project_path=str(path),
        width=width,
        height=height,
        steps=project.steps,
        layers=(*[kept for kept in project.layers if _painted(kept)], layer),
        revision=len(project.layers) + 1,
        out_path=out,
    )
    request.validate()

    def finish(outputs: list[str]) -> str:
        from workers.brushes.project_io import write_project

        render = Path(outputs[-1])  # the composite the worker wrote (atomically, with parameters)
        project.layers.append(layer)
        project.render_png = render.read_bytes()
        write_project(path, project)  # atomic: the previous project stays whole until the rename
        return f"saved {path} ({len(project.layers)} layers)"

    return BrushPlan(request=request, finish=finish)


def _checked_png(out: str) -> str:
    path = Path(out).expanduser()
    if path.suffix.lower() != ".png":
        raise BadInput(f"output {path} must be a .png file")
    return str(check_writable(path).resolve())


def _default_regen_step(steps: int) -> int:
    """The protocol's default, or the last step this project's schedule allows if it has fewer."""
    return max(0, min(default_of(BrushLayer, "regen_step"), steps - 1 - BRUSH_MERGE_STEPS))


def mask_png(path: str, size: tuple[int, int]) -> bytes:
    """The mask as an 8-bit grayscale PNG: white regenerates, black is kept, transparent is black."""
    from PIL import Image, UnidentifiedImageError

    from workers.safe_images import image_size

    found = image_size(path, f"mask {path}")  # from the header: a bomb is refused before decoding
    if found != size:
        raise BadInput(f"mask {path} is {found[0]}x{found[1]}, the project's image is {size[0]}x{size[1]}")
    try:
        with Image.open(path) as image:
            rgba = image.convert("RGBA")
    except FileNotFoundError:
        raise BadInput(f"mask {path} does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadInput(f"mask {path} is not a readable image ({exc})") from None
    gray = Image.alpha_composite(Image.new("RGBA", rgba.size, "black"), rgba).convert("L")
    if gray.getbbox() is None:
        raise BadInput(f"mask {path} has no white pixels: paint the region to regenerate in white")
    buffer = io.BytesIO()
    gray.save(buffer, format="PNG")
    return buffer.getvalue()


def _painted(layer: BrushLayer) -> bool:
    """Layers the editor saved before anything was painted on them are not rendered (as there)."""
    from PIL import Image

    with Image.open(io.BytesIO(layer.mask_png)) as mask:
        return mask.convert("L").getbbox() is not None
