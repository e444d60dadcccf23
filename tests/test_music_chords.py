"""Chord symbols, tempo and meter become chroma that changes on the bar lines (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from workers.errors import BadInput
from workers.music.chords import (
    NOTE_NAMES,
    bar_seconds,
    chroma_frames,
    parse_chord,
    parse_meter,
    parse_progression,
)
from workers.protocol import MusicRequest

CHROMA_RATE = 32000 / 4096  # MusicGen-Melody's feature extractor: hop 4096 at 32 kHz


def names(pitch_classes) -> set[str]:
    return {NOTE_NAMES[p] for p in pitch_classes}


@pytest.mark.parametrize(
    "symbol, tones, bass",
    [
        ("C", {"C", "E", "G"}, "C"),
        ("Am", {"A", "C", "E"}, "A"),
        ("F#m7", {"F#", "A", "C#", "E"}, "F#"),
        ("Bb7", {"A#", "D", "F", "G#"}, "A#"),
        ("Cmaj7", {"C", "E", "G", "B"}, "C"),
        ("Bdim", {"B", "D", "F"}, "B"),
        ("Caug", {"C", "E", "G#"}, "C"),
        ("Dsus4", {"D", "G", "A"}, "D"),
        ("Dsus2", {"D", "E", "A"}, "D"),
        ("C/E", {"C", "E", "G"}, "E"),
        ("Dm7b5", {"D", "F", "G#", "C"}, "D"),
    ],
)
def test_chord_symbols_name_the_right_notes(symbol, tones, bass):
    chord = parse_chord(symbol, 1)
    assert names(chord.tones) == tones
    assert NOTE_NAMES[chord.bass] == bass


@pytest.mark.parametrize(
    "text, symbol, position",
    [
        ("C G H F", "H", 3),
        ("C Gx Am F", "Gx", 2),
        ("Cmaj13#11", "Cmaj13#11", 1),
        ("| C | G | Am | F7/Q |", "F7/Q", 4),
    ],
)
def test_unknown_chord_names_the_symbol_and_its_position(text, symbol, position):
    with pytest.raises(BadInput) as error:
        parse_progression(text)
    assert repr(symbol) in str(error.value)
    assert f"position {position}" in str(error.value)


def test_bar_lines_and_repeat_marks():
    chords = parse_progression("| C | % | G7 |")
    assert [c.symbol for c in chords] == ["C", "C", "G7"]


@pytest.mark.parametrize("bpm, meter", [(100, "4/4"), (120, "3/4"), (87.5, "6/8"), (140, "7/8")])
def test_chord_changes_land_on_bar_boundaries_within_one_chroma_frame(bpm, meter):
    chords = parse_progression("C G Am F")
    bar_s = bar_seconds(bpm, parse_meter(meter))
    seconds = 8 * bar_s
    frames = chroma_frames(chords, bpm, parse_meter(meter), seconds, CHROMA_RATE)
    assert frames.shape == (1 + int(seconds * CHROMA_RATE + 1e-9), 12)
    assert np.all(frames.sum(axis=1) == 1)  # one-hot, as the feature extractor produces
    for bar in range(1, 8):
        boundary = bar * bar_s
        first = int(np.ceil(boundary * CHROMA_RATE - 1e-9))  # first frame at or after the bar line
        assert abs(first / CHROMA_RATE - boundary) < 1 / CHROMA_RATE
        new, old = chords[bar % 4], chords[(bar - 1) % 4]
        assert frames[first].argmax() == new.bass  # the new chord sounds from that frame on
        assert frames[first - 1].argmax() in old.pitch_classes  # the frame before still has the old one


def test_chroma_stays_inside_the_chord_for_the_whole_bar():
    chords = parse_progression("C F#")  # no shared notes: any leak would show
    meter = parse_meter("4/4")
    frames = chroma_frames(chords, 90, meter, 4 * bar_seconds(90, meter), CHROMA_RATE)
    for i, frame in enumerate(frames):
        bar = int(i / CHROMA_RATE / bar_seconds(90, meter) + 1e-9)
        assert frame.argmax() in chords[bar % 2].pitch_classes


def test_window_chroma_is_the_song_chroma_from_the_window_start():
    chords, meter = parse_progression("C G Am F"), parse_meter("4/4")
    song = chroma_frames(chords, 120, meter, 16, CHROMA_RATE)
    window = chroma_frames(chords, 120, meter, 4, CHROMA_RATE, start_s=64 / CHROMA_RATE)
    assert window.shape[0] == 1 + int(4 * CHROMA_RATE)
    assert np.array_equal(window, song[64 : 64 + window.shape[0]])


@pytest.mark.parametrize(
    "fields, problem",
    [
        (dict(chords="C G Q7 F", bpm=100), "'Q7' at position 3"),
        (dict(chords="C G", bpm=0), "chords need a tempo"),
        (dict(bpm=1000), "bpm must be between 20 and 400, got 1000"),
        (dict(bpm=0.5), "bpm must be between 20 and 400"),
        (dict(seconds=0), "seconds must be between"),
        (dict(meter="4/5"), "not a time signature"),
        (dict(format="aiff"), "not supported"),
    ],
)
def test_bad_music_requests_are_refused_before_any_work(fields, problem):
    with pytest.raises(BadInput, match=problem.replace("(", r"\(")):
        MusicRequest(prompt="lofi beat", **fields).validate()


def test_long_pieces_run_in_the_background_class():
    assert MusicRequest(prompt="x", seconds=10).default_priority.value == "single_shot"
    assert MusicRequest(prompt="x", seconds=120).default_priority.value == "background"
