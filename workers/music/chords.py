"""Chord symbols per bar, tempo and meter -> the chroma sequence MusicGen-Melody conditions on.

MusicGen-Melody was trained on chroma extracted from real audio by its feature extractor: an STFT
with hop 4096 at 32 kHz (7.8125 frames per second, frame ``i`` centred on ``i * hop`` samples),
folded into 12 pitch classes and then made one-hot per frame (argmax). A chord is several notes,
but a one-hot frame holds one pitch class, so a chord is written the way its audio usually reads
through that extractor: its bass note on the first beat of the chord, then its chord tones beat
by beat (root, fifth, third, seventh). The chord, and so the harmony the model hears, changes on
the first chroma frame at or after the bar line: within one frame (0.128 s) of the boundary.

Syntax: one chord per bar, separated by spaces or bar lines, e.g. ``C G Am F`` or ``| Dm7 | G7 |
Cmaj7 | Cmaj7 |``. ``%`` repeats the previous bar. Roots A-G with ``#`` or ``b``; qualities ``m``,
``dim``, ``aug``/``+``, ``sus2``, ``sus4``, ``6``, ``m6``, ``7``, ``maj7``, ``m7``, ``m7b5``,
``dim7``, ``9``, ``add9``; slash chords (``C/E``) put the named note in the bass. The progression
loops when the music is longer than it. BPM counts quarter notes, as in a DAW.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from workers.errors import BadInput

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_NATURALS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
# Intervals above the root, in the order the tones are voiced beat by beat (root, fifth, third, 7th).
# fmt: off
QUALITIES: dict[str, tuple[int, ...]] = {
    "": (0, 7, 4), "maj": (0, 7, 4), "M": (0, 7, 4),
    "m": (0, 7, 3), "min": (0, 7, 3), "-": (0, 7, 3),
    "dim": (0, 6, 3), "°": (0, 6, 3), "o": (0, 6, 3),
    "aug": (0, 8, 4), "+": (0, 8, 4),
    "sus2": (0, 7, 2), "sus4": (0, 7, 5), "sus": (0, 7, 5),
    "6": (0, 7, 4, 9), "m6": (0, 7, 3, 9),
    "7": (0, 7, 4, 10), "dom7": (0, 7, 4, 10),
    "maj7": (0, 7, 4, 11), "M7": (0, 7, 4, 11), "Δ": (0, 7, 4, 11), "Δ7": (0, 7, 4, 11),
    "m7": (0, 7, 3, 10), "min7": (0, 7, 3, 10), "-7": (0, 7, 3, 10),
    "m7b5": (0, 6, 3, 10), "ø": (0, 6, 3, 10), "ø7": (0, 6, 3, 10),
    "dim7": (0, 6, 3, 9), "°7": (0, 6, 3, 9), "o7": (0, 6, 3, 9),
    "7sus4": (0, 7, 5, 10), "9": (0, 7, 4, 10, 2), "add9": (0, 7, 4, 2), "m9": (0, 7, 3, 10, 2),
}
# fmt: on
_SYMBOL = re.compile(r"^([A-G])([#b♯♭]?)(.*?)(?:/([A-G])([#b♯♭]?))?$")
REPEAT = "%"
METER_DENOMINATORS = (1, 2, 4, 8, 16)


@dataclass(frozen=True, slots=True)
class Chord:
    """One bar's chord: its symbol as typed, pitch classes in voicing order, and the bass note."""

    symbol: str
    tones: tuple[int, ...]
    bass: int

    @property
    def pitch_classes(self) -> frozenset[int]:
        return frozenset(self.tones) | {self.bass}


@dataclass(frozen=True, slots=True)
class Meter:
    beats: int
    unit: int

    @property
    def quarter_notes(self) -> float:
        return self.beats * 4 / self.unit


def _pitch(letter: str, accidental: str) -> int:
    shift = {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(accidental, 0)
    return (_NATURALS[letter.upper()] + shift) % 12


def parse_chord(symbol: str, position: int) -> Chord:
    """One chord symbol; ``position`` (1-based bar) only names where an unknown symbol is."""
    match = _SYMBOL.match(symbol)
    if not match or match.group(3) not in QUALITIES:
        raise BadInput(
            f"unknown chord symbol {symbol!r} at position {position} (bar {position}); "
            "write chords like C, Am, G7, Cmaj7, Dm7b5, Bdim, Caug, Dsus4 or C/E"
        )
    letter, accidental, quality, bass_letter, bass_accidental = match.groups()
    root = _pitch(letter, accidental)
    tones = tuple((root + interval) % 12 for interval in QUALITIES[quality])
    bass = _pitch(bass_letter, bass_accidental) if bass_letter else root
    return Chord(symbol=symbol, tones=tones, bass=bass)


def parse_progression(text: str) -> list[Chord]:
    """``"C G Am F"`` -> one Chord per bar; raises BadInput naming an unknown symbol and its bar."""
    symbols = text.replace("|", " ").split()
    chords: list[Chord] = []
    for position, symbol in enumerate(symbols, start=1):
        if symbol == REPEAT:
            if not chords:
                raise BadInput(f"'%' at position {position} repeats a previous bar, but there is none")
            chords.append(chords[-1])
            continue
        chords.append(parse_chord(symbol, position))
    return chords


def parse_meter(text: str) -> Meter:
    match = re.fullmatch(r"\s*(\d{1,9})\s*/\s*(\d{1,9})\s*", text or "")  # int() refuses 4301 digits
    if not match or not 1 <= int(match.group(1)) <= 32 or int(match.group(2)) not in METER_DENOMINATORS:
        raise BadInput(f"meter {text!r} is not a time signature like 4/4, 3/4 or 6/8")
    return Meter(beats=int(match.group(1)), unit=int(match.group(2)))


def bar_seconds(bpm: float, meter: Meter) -> float:
    """Length of one bar: BPM counts quarter notes."""
    return meter.quarter_notes * 60.0 / bpm


def beat_seconds(bpm: float, meter: Meter) -> float:
    return bar_seconds(bpm, meter) / meter.beats


def chord_at(chords: list[Chord], seconds: float, bar_s: float) -> tuple[int, Chord]:
    """The bar index (counting from 0, not looped) and the chord sounding at ``seconds``."""
    bar = math.floor(seconds / bar_s + 1e-9)
    return bar, chords[bar % len(chords)]


def pitch_class_at(chords: list[Chord], seconds: float, bpm: float, meter: Meter) -> int:
    """The one pitch class a one-hot chroma frame shows at ``seconds``: bass, then tones per beat."""
    bar_s = bar_seconds(bpm, meter)
    bar, chord = chord_at(chords, seconds, bar_s)
    beat = math.floor((seconds - bar * bar_s) / beat_seconds(bpm, meter) + 1e-9)
    return chord.bass if beat == 0 else chord.tones[beat % len(chord.tones)]


def chroma_frames(
    chords: list[Chord], bpm: float, meter: Meter, seconds: float, frame_rate: float, start_s: float = 0.0
):
    """One-hot chroma, shape ``(frames, 12)`` float32, for ``[start_s, start_s + seconds]``.

    Frame ``i`` describes the instant ``start_s + i / frame_rate`` (the extractor centres its STFT
    frames), and there are ``1 + floor(seconds * frame_rate)`` of them, as the extractor produces.
    """
    import numpy as np

    count = 1 + math.floor(seconds * frame_rate + 1e-9)
    frames: np.ndarray = np.zeros((count, 12), dtype=np.float32)
    for i in range(count):
        frames[i, pitch_class_at(chords, start_s + i / frame_rate, bpm, meter)] = 1.0
    return frames


def describe_for_prompt(chords: list[Chord], bpm: float, meter: Meter) -> str:
    """What a text-only model reads: tempo, meter and the progression, in the words of captions."""
    parts = []
    if bpm:
        parts.append(f"{bpm:g} bpm")
        parts.append(f"{meter.beats}/{meter.unit} time")
    if chords:
        parts.append("chords " + " ".join(chord.symbol for chord in chords))
    return ", ".join(parts)
