"""What a song's waveform view draws, computed without Qt: the real per-pixel-column minimum and
maximum of the samples and, for a piece generated window by window, which generation call made
which stretch of it.

The windows come from the parameters the music worker writes into the file (``windows``: one
entry per ``generate`` call, in seconds of the finished song; see ``workers/jobs/music.py``), so
the GUI never imports the generation code. Each window's band covers what that call added to the
song; the seam where it was crossfaded with the previous window is drawn hatched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class GenerationWindow:
    """One ``generate`` call of a long piece, in seconds of the finished song."""

    index: int
    start_s: float
    """Where the call's own new audio begins in the song (after the context it re-read)."""
    end_s: float
    context_s: float
    """Seconds of the song so far the call continued from (0 for the first)."""
    crossfade_s: float
    """Seconds before ``start_s`` blended with the previous window."""
    seed: int | None = None

    def describe(self, count: int) -> str:
        text = f"window {self.index + 1} of {count}: {self.start_s:.1f}–{self.end_s:.1f} s"
        if self.seed is not None:
            text += f", seed {self.seed}"
        if self.context_s:
            text += f", continues from {self.context_s:.1f} s of the song before it"
        if self.crossfade_s:
            text += f", crossfaded over {self.crossfade_s:.1f} s"
        return text


def generation_windows(params: dict) -> list[GenerationWindow]:
    """The windows recorded in a music file's parameters; none for a file without them."""
    found = []
    raw = params.get("windows")
    if not isinstance(raw, list):
        return []
    for position, item in enumerate(raw):
        try:
            start, new = float(item["start_s"]) + float(item["context_s"]), float(item["new_s"])
            seed = item.get("seed")
            found.append(
                GenerationWindow(
                    index=int(item.get("index", position)),
                    start_s=start,
                    end_s=start + new,
                    context_s=float(item["context_s"]),
                    crossfade_s=float(item.get("crossfade_s", 0.0)),
                    seed=int(seed) if isinstance(seed, int) else None,
                )
            )
        except (KeyError, TypeError, ValueError):
            return []  # a file edited by hand or by another tool: no provenance rather than a wrong one
    return found


def column_peaks(audio: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of the mixed-down samples in each of ``columns`` equal slices of the song.

    ``audio`` is (channels, samples). With fewer samples than columns, each column takes the
    sample under it, so a short clip still spans the whole width.
    """
    mono = np.asarray(audio, dtype=np.float32).mean(axis=0)
    columns = max(1, int(columns))
    if mono.size == 0:
        return np.zeros(columns, np.float32), np.zeros(columns, np.float32)
    if mono.size < columns:
        picked = mono[np.minimum((np.arange(columns) * mono.size) // columns, mono.size - 1)]
        return picked, picked
    edges = (np.arange(columns) * mono.size) // columns  # strictly increasing: every slice non-empty
    return np.minimum.reduceat(mono, edges), np.maximum.reduceat(mono, edges)
