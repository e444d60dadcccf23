"""Music longer than one generation window: continuation, overlap and an equal-power crossfade.

MusicGen produces at most about 30 s per ``generate`` call. Longer pieces are made the way
MusicGen's own "extend" works: each new window is prompted with the tail of the song so far
(``context`` samples), so it continues the music instead of starting over; its audio covers that
tail again plus ``new`` samples. The last ``crossfade`` samples of the tail are blended with the
start of the new window's rendition of them under a crossfade that keeps the level: equal power
(sin/cos) for unrelated audio, but the new window re-renders the same stretch, and two renditions
that agree would come out up to 3 dB louder mid-seam under equal power; the fades are normalised by
how alike the two renditions are (``level_keeping_fades``), so neither the level nor the waveform
jumps at a seam. The song is cut to exactly the requested number of
samples. ``LongForm.audio`` always holds the finished windows, so a cancel keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Window:
    """One ``generate`` call, in samples of the finished song."""

    index: int
    start: int
    """Where this window's audio (its context included) begins in the song."""
    context: int
    """Samples of the song so far it continues from (0 for the first window)."""
    new: int
    """Samples it adds to the song."""
    crossfade: int
    """Samples at the seam blended with the previous window (at most ``context``)."""

    @property
    def length(self) -> int:
        return self.context + self.new


def plan_windows(total: int, window: int, context: int, crossfade: int, hop: int = 1) -> list[Window]:
    """Cover ``total`` samples with windows of at most ``window`` samples, each after the first
    continuing from ``context`` samples of the previous ones. Lengths are whole codec frames
    (``hop`` samples) so that the prompt's codes line up with the song."""
    if total <= 0:
        raise ValueError("nothing to generate")
    window, context = window // hop * hop, context // hop * hop
    if context >= window:
        raise ValueError(f"context ({context} samples) must be shorter than a window ({window})")
    windows: list[Window] = []
    produced = 0
    while produced < total:
        tail = min(context, produced // hop * hop) if windows else 0
        new = min(window - tail, total - produced)
        windows.append(
            Window(
                index=len(windows),
                start=produced - tail,
                context=tail,
                new=new,
                crossfade=min(crossfade, tail),
            )
        )
        produced += new
    return windows


def equal_power_fades(samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade_out, fade_in) with fade_out**2 + fade_in**2 == 1 at every sample: constant power."""
    t = (np.arange(samples, dtype=np.float64) + 0.5) / samples
    return np.cos(t * math.pi / 2).astype(np.float32), np.sin(t * math.pi / 2).astype(np.float32)


def level_keeping_fades(old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fade_out, fade_in) for blending ``old`` into ``new`` (same shape) without a level bump.

    With ``a``, ``b`` the equal-power fades and ``r`` the two stretches' normalised correlation, the
    blend's power is ``a² + b² + 2rab = 1 + r·sin 2θ`` times theirs; dividing both fades by its root
    keeps it at 1: identical renditions pass unchanged, unrelated ones get equal power. A negative
    ``r`` (rare: opposite phase) is taken as 0, so the gain never exceeds equal power's."""
    fade_out, fade_in = equal_power_fades(old.shape[-1])
    norms = float(np.linalg.norm(old)) * float(np.linalg.norm(new))
    r = min(1.0, max(0.0, float(np.vdot(old, new)) / norms)) if norms > 0 else 0.0
    gain = 1.0 / np.sqrt(1.0 + r * 2.0 * fade_out * fade_in)
    return (fade_out * gain).astype(np.float32), (fade_in * gain).astype(np.float32)


def join(song: np.ndarray, window: Window, audio: np.ndarray) -> np.ndarray:
    """Append a window's audio ``(channels, >= window.length)`` to ``song`` ``(channels, samples)``."""
    if audio.shape[-1] < window.length:
        raise ValueError(f"window {window.index} produced {audio.shape[-1]} samples, needs {window.length}")
    audio = audio[:, : window.length].astype(np.float32, copy=False)
    fade = window.crossfade
    if fade == 0:
        return np.concatenate([song, audio[:, window.context :]], axis=1)
    seam = song.shape[-1] - fade
    old, new = song[:, seam:], audio[:, window.context - fade : window.context]
    fade_out, fade_in = level_keeping_fades(old, new)
    blended = old * fade_out + new * fade_in
    return np.concatenate([song[:, :seam], blended, audio[:, window.context :]], axis=1)


GenerateWindow = Callable[[Window, "np.ndarray | None"], np.ndarray]


class LongForm:
    """Renders a plan window by window; ``audio`` holds what is finished, even after a cancel."""

    def __init__(self, windows: list[Window], channels: int = 1) -> None:
        self.windows = windows
        self.audio: np.ndarray = np.zeros((channels, 0), dtype=np.float32)
        self.finished = 0

    @property
    def total(self) -> int:
        return sum(window.new for window in self.windows)

    def run(self, generate: GenerateWindow, on_window: Callable[[int, int], None] = lambda done, count: None):
        """``generate(window, tail)`` returns the window's audio; ``tail`` is the context to continue."""
        for window in self.windows[self.finished :]:
            tail = self.audio[:, window.start :] if window.context else None
            self.audio = join(self.audio, window, generate(window, tail))
            self.finished += 1
            on_window(self.finished, len(self.windows))
        return self.audio
