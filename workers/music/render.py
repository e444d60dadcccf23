"""One music request through a loaded MusicGen(-Melody): conditioning, windows, token hooks.

Reads top to bottom: the text prompt (with tempo, meter and, for a text-only model, the chords)
is tokenized once; the song is planned as windows (``longform``); each window is one
``model.generate`` call, seeded with ``seed + window index``, continuing from the song's tail
(its EnCodec codes become the decoder prompt) and, for a Melody model, conditioned on the chroma
of the chord progression over exactly the stretch of time the window covers. A
``StoppingCriteria`` calls back after every generated token, which is where progress is reported
and where a cancel stops the window mid-way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from workers.music.chords import (
    Chord,
    Meter,
    chroma_frames,
    describe_for_prompt,
    parse_meter,
    parse_progression,
)
from workers.music.longform import LongForm, Window, plan_windows
from workers.protocol import MusicRequest

CONTEXT_FRACTION = 0.4
"""Share of a window spent re-reading the song's tail (MusicGen's extend uses 12 s of 30 s)."""
CROSSFADE_FRACTION = 0.5
"""Share of that context blended at the seam."""
MAX_CROSSFADE_S = 2.0
TOP_K = 250  # MusicGen's published sampling setting

OnToken = Callable[[int, int, str], None]
"""on_token(tokens done, tokens in total, message)."""


@dataclass
class MusicPlan:
    """What the request means for this model, worked out before any generation."""

    text: str
    chords: list[Chord]
    meter: Meter
    bpm: float
    total_samples: int
    windows: list[Window]
    uses_chroma: bool
    notes: list[str] = field(default_factory=list)


def conditioning_text(request: MusicRequest, chords: list[Chord], meter: Meter, melody: bool) -> str:
    """The prompt plus tempo and meter; a text-only model also reads the chords as words."""
    extra = describe_for_prompt([] if melody else chords, request.bpm, meter)
    return f"{request.prompt.strip()}, {extra}" if extra else request.prompt.strip()


def plan_music(music, request: MusicRequest) -> MusicPlan:
    chords = parse_progression(request.chords)
    meter = parse_meter(request.meter)
    total = round(request.seconds * music.sample_rate)
    window_s = min(request.window_seconds or music.max_window_s, music.max_window_s)
    window = max(int(window_s * music.sample_rate) // music.hop, 2) * music.hop
    context = int(window * CONTEXT_FRACTION) // music.hop * music.hop
    crossfade = min(int(context * CROSSFADE_FRACTION), int(MAX_CROSSFADE_S * music.sample_rate))
    notes = []
    if chords and not music.melody:
        notes.append("this model has no chroma input: chords and tempo only reach it as words in the prompt")
    return MusicPlan(
        text=conditioning_text(request, chords, meter, music.melody),
        chords=chords,
        meter=meter,
        bpm=request.bpm,
        total_samples=total,
        windows=plan_windows(total, window, context, crossfade, music.hop),
        uses_chroma=bool(chords) and music.melody,
        notes=notes,
    )


def new_tokens(music, window: Window) -> int:
    """Decoder steps for a window: its new frames plus the codebook delay pattern's tail (a stereo
    decoder interleaves a left and a right set of codebooks, each delayed on its own)."""
    per_channel = music.num_codebooks // max(1, music.channels)
    return math.ceil(window.new / music.hop) + per_channel - 1


class MusicRender:
    """Renders one plan; ``longform.audio`` keeps the finished windows if a window is cancelled."""

    def __init__(self, music, request: MusicRequest, plan: MusicPlan) -> None:
        self.music = music
        self.request = request
        self.plan = plan
        self.longform = LongForm(plan.windows, channels=music.channels)
        self.tokens_total = sum(new_tokens(music, w) for w in plan.windows)
        self.tokens_done = 0

    def run(
        self,
        on_token: OnToken = lambda done, total, message: None,
        on_window: Callable[[int, int], None] = lambda done, count: None,
    ) -> np.ndarray:
        import torch

        text = self.music.tokenizer([self.plan.text], return_tensors="pt", padding=True)
        text = {k: v.to(self.music.model.device) for k, v in text.items()}

        def generate(window: Window, tail: np.ndarray | None) -> np.ndarray:
            with torch.inference_mode():
                return self._generate_window(window, tail, text, on_token)

        return self.longform.run(generate, on_window)

    def _generate_window(self, window: Window, tail, text: dict, on_token: OnToken) -> np.ndarray:
        import torch
        from transformers import StoppingCriteriaList

        model = self.music.model
        count = len(self.plan.windows)
        message = f"window {window.index + 1}/{count}" if count > 1 else "generating"
        hook = TokenHook(lambda: self._count_token(on_token, message))
        kwargs = dict(
            text,
            max_new_tokens=new_tokens(self.music, window),
            do_sample=True,
            top_k=TOP_K,
            temperature=self.request.temperature,
            guidance_scale=self.request.guidance,
            stopping_criteria=StoppingCriteriaList([hook]),
        )
        if tail is not None:
            kwargs["decoder_input_ids"] = tail_codes(self.music, tail)
        if self.plan.uses_chroma:
            kwargs["input_features"] = self._chroma(window).to(model.device, model.dtype)
        torch.manual_seed(self.request.seed + window.index)
        audio = model.generate(**kwargs)  # (1, channels, samples)
        return audio[0].float().cpu().numpy()

    def _count_token(self, on_token: OnToken, message: str) -> None:
        self.tokens_done += 1
        on_token(min(self.tokens_done, self.tokens_total), self.tokens_total, message)

    def _chroma(self, window: Window):
        """Chroma over exactly the window's span of the song, context included: (1, frames, 12)."""
        import torch

        rate = self.music.sample_rate
        frames = chroma_frames(
            self.plan.chords,
            self.plan.bpm,
            self.plan.meter,
            window.length / rate,
            self.music.chroma_frame_rate,
            start_s=window.start / rate,
        )
        return torch.from_numpy(frames)[None]


def tail_codes(music, tail: np.ndarray):
    """EnCodec codes of the song's tail as decoder prompt ids: (codebooks * 1, frames)."""
    import torch

    model = music.model
    audio = torch.from_numpy(np.ascontiguousarray(tail, dtype=np.float32)).to(model.device, model.dtype)

    def encode(channel: int):  # -> (codebooks, frames)
        return model.audio_encoder.encode(audio[None, channel : channel + 1]).audio_codes[0, 0]

    if music.channels == 1:
        codes = encode(0)
    else:  # stereo MusicGen interleaves left and right codebooks
        left, right = encode(0), encode(min(1, audio.shape[0] - 1))
        codes = torch.stack([left, right], dim=1).reshape(-1, left.shape[-1])
    return codes.reshape(-1, codes.shape[-1])


class TokenHook:
    """A ``StoppingCriteria`` that never stops: it calls back once per generated token, so progress
    and cancel (``ctx.step`` raises ``JobCancelled``) take effect mid-window."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        self.callback()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
