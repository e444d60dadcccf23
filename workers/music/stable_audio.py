"""One music request through Stable Audio Open (diffusers' ``StableAudioPipeline``).

A diffusion model, not a language model: the whole clip is denoised at once, ``steps`` times, in a
latent of fixed length; ``audio_end_in_s`` conditions it on the length and the pipeline cuts the
decoded waveform there. So it has a hard limit (``MusicModel.max_window_s``: 47.55 s for the real
model) and no continuation: a longer piece is refused with the fix rather than stitched from
unrelated clips.

Chords, BPM and meter: the model has no chroma or tempo input. It was trained on captions that
name tempo ("120 BPM") and often the key and chords, so they reach it as words in the prompt, the
same words a text-only MusicGen reads (``render.conditioning_text``). That steers style and
tempo; it does not place chords on bars.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from workers.errors import BadInput
from workers.music.chords import parse_meter, parse_progression
from workers.music.render import conditioning_text
from workers.protocol import MusicRequest

DEFAULT_STEPS = 100
"""Stable Audio Open's own default; ``MusicRequest.steps == 0`` means this."""
TEXT_ONLY_NOTE = "Stable Audio Open has no chroma input: chords and tempo reach it as words in the prompt"

OnStep = Callable[[int, int], None]
"""on_step(steps done, steps in total); raising (a cancel) stops the clip."""


def plan_text(music, request: MusicRequest) -> tuple[str, list[str]]:
    """The conditioning text and the notes to show; a clip beyond the model's limit is refused."""
    if request.seconds > music.max_window_s + 1e-9:
        raise BadInput(
            f"{music.title} makes at most {music.max_window_s:.2f} s in one clip, got "
            f"{request.seconds:g} s; lower the length, or use a MusicGen model for longer pieces"
        )
    chords = parse_progression(request.chords)
    notes = [TEXT_ONLY_NOTE] if chords or request.bpm else []
    return conditioning_text(request, chords, parse_meter(request.meter), melody=False), notes


def render(music, request: MusicRequest, text: str, on_step: OnStep = lambda done, total: None) -> np.ndarray:
    """(channels, samples) float32, exactly ``request.seconds`` long at the model's rate."""
    import torch

    steps = request.steps or DEFAULT_STEPS
    pipe = music.model
    generator = torch.Generator("cpu").manual_seed(request.seed)
    with torch.inference_mode():
        audio = pipe(
            prompt=text,
            audio_end_in_s=request.seconds,
            num_inference_steps=steps,
            guidance_scale=request.guidance,
            generator=generator,
            callback=lambda step, timestep, latents: on_step(step + 1, steps),
            output_type="pt",
        ).audios[0]  # (channels, samples)
    audio = audio.float().cpu().numpy()
    total = round(request.seconds * music.sample_rate)
    if audio.shape[-1] < total:  # the pipeline cuts at int(seconds x rate): at most one sample short
        audio = np.pad(audio, ((0, 0), (0, total - audio.shape[-1])))
    return audio[:, :total]
