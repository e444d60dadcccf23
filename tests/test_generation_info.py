"""Reading what made an output: A1111's ``parameters`` text exactly as A1111 reads it, Hearth's own
PNG chunk, sidecar and media tags, and any hostile file refused with a message, never a crash."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.test_fuzz import corpus_bytes, corpus_params
from workers.errors import BadInput
from workers.generation_info import (
    MAX_PARAMETERS_CHARS,
    MAX_SIDECAR_BYTES,
    parse_a1111,
    read_info,
    request_fields,
    settings_pairs,
)
from workers.outputs import a1111_parameters, save_png, write_sidecar
from workers.protocol import ImageRequest, MusicRequest

A1111_TEXT = (
    "a lighthouse on a cliff, (masterpiece:1.2)\n"
    "golden hour\n"
    "Negative prompt: blurry, lowres\n"
    "watermark\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3141592, "
    'Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "add_detail: 7c6bad76eb54, '
    'film: 0a1b2c", Version: v1.10.1'
)


def a1111_png(path, text: str = A1111_TEXT, size=(64, 96)):
    """A PNG as A1111 writes it: the picture and one ``parameters`` text chunk."""
    info = PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", size, (40, 90, 160)).save(path, pnginfo=info)
    return path


# --------------------------------------------------------------------------- A1111's text


def test_a1111_text_gives_prompt_negative_and_every_setting():
    parsed = parse_a1111(A1111_TEXT)
    p = parsed.params
    assert p["prompt"] == "a lighthouse on a cliff, (masterpiece:1.2)\ngolden hour"
    assert p["negative_prompt"] == "blurry, lowres\nwatermark"
    assert (p["steps"], p["guidance"], p["seed"]) == (28, 6.5, 3141592)
    assert (p["width"], p["height"]) == (512, 768)
    assert p["sampler"] == "DPM++ 2M Karras"  # A1111 1.9+ splits the schedule out; joined back
    assert p["model"] == "v1-5-pruned-emaonly"
    assert (
        p["a1111"]["Lora hashes"] == "add_detail: 7c6bad76eb54, film: 0a1b2c"
    )  # a quoted value keeps its commas
    assert p["a1111"]["Model hash"] == "6ce0161689"
    assert parsed.notes == ()


def test_older_a1111_sampler_names_and_automatic_schedules_stay_as_written():
    old = parse_a1111("a cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 64x64").params
    assert old["sampler"] == "DPM++ 2M Karras"
    auto = parse_a1111("a cat\nSteps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7").params
    assert auto["sampler"] == "Euler a"


def test_a_last_line_with_fewer_than_three_settings_is_part_of_the_prompt():
    parsed = parse_a1111("a portrait\nstyle: oil, mood: calm")
    assert parsed.params["prompt"] == "a portrait\nstyle: oil, mood: calm"
    assert "steps" not in parsed.params


def test_hearths_own_text_reads_back_to_its_parameters():
    params = {
        "prompt": "a red boat",
        "negative_prompt": "fog",
        "steps": 12,
        "sampler": "Euler a",
        "guidance": 4.5,
        "seed": 99,
        "width": 64,
        "height": 128,
        "model": "demo-sd",
    }
    back = parse_a1111(a1111_parameters(params)).params
    assert {k: back[k] for k in params} == params


def test_values_that_are_not_what_their_key_needs_are_named_not_raised():
    parsed = parse_a1111("a cat\nSteps: many, Sampler: Euler, CFG scale: nan, Seed: 12, Size: hugexbig")
    assert parsed.params["seed"] == 12 and parsed.params["sampler"] == "Euler"
    assert "steps" not in parsed.params and "guidance" not in parsed.params and "width" not in parsed.params
    assert len(parsed.notes) == 3
    assert any("Steps: 'many' is not a whole number" in n for n in parsed.notes)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "holds no prompt and no settings"),
        ("\n\n  \n", "holds no prompt and no settings"),
        ("x" * (MAX_PARAMETERS_CHARS + 1), "at most"),
    ],
)
def test_empty_or_oversized_text_is_refused_with_the_reason(text, problem):
    with pytest.raises(BadInput, match=problem):
        parse_a1111(text)


@given(st.text(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_any_text_parses_or_is_refused_never_crashes(text):
    try:
        parsed = parse_a1111(text)
    except BadInput:
        return
    assert isinstance(parsed.params["prompt"], str)


def test_pathological_lines_are_read_in_linear_time():
    import time

    lines = ["a," * 30000 + ":", 'ab: "' + "x" * 60000, ": " * 30000, '"' * 60000, "k" * 60000]
    start = time.perf_counter()
    for line in lines:
        settings_pairs(line)
    assert time.perf_counter() - start < 5.0  # quadratic scanning of these takes minutes


# --------------------------------------------------------------------------- files


def test_a_png_from_another_sd_app(tmp_path):
    info = read_info(a1111_png(tmp_path / "00012-3141592.png"))
    assert info.kind == "image" and not info.from_hearth
    assert info.source == "the image's A1111 parameters"
    assert info.prompt.startswith("a lighthouse") and info.params["seed"] == 3141592
    assert info.text == A1111_TEXT


def test_hearths_png_reads_its_full_record(tmp_path):
    params = {
        "job": "ImageRequest",
        "prompt": "a red boat",
        "seed": 7,
        "steps": 4,
        "model": "demo-sd",
        "width": 8,
    }
    path = tmp_path / "boat.png"
    save_png(Image.new("RGB", (8, 8)), path, params)
    info = read_info(path)
    assert info.params == params and info.from_hearth and info.kind == "image"
    assert info.source == "the PNG's hearth text chunk"
    assert info.text.startswith("a red boat\nSteps: 4")


def test_a_png_without_chunks_uses_its_sidecar(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    write_sidecar(path, {"job": "ImageRequest", "prompt": "from the sidecar"})
    info = read_info(path)
    assert info.prompt == "from the sidecar" and info.source == "the sidecar plain.png.json"


def test_a_damaged_sidecar_is_passed_over_with_a_note(tmp_path):
    path = a1111_png(tmp_path / "x.png")
    (tmp_path / "x.png.json").write_text("{not json")
    info = read_info(path)
    assert info.prompt.startswith("a lighthouse")
    assert info.notes == ("x.png.json is not valid JSON",)


def test_an_oversized_sidecar_is_not_read(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    (tmp_path / "plain.png.json").write_bytes(b" " * (MAX_SIDECAR_BYTES + 1))
    with pytest.raises(BadInput, match=r"carries no generation parameters \(plain.png.json is .* at most"):
        read_info(path)


def _bomb_png(path, side=50_000):
    """A valid 1x1 PNG whose header claims side x side pixels."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = struct.pack(">II", side, side) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n garbage"), "is not a readable image"),
        (lambda p: p.write_bytes(b""), "is not a readable image"),
        (lambda p: _bomb_png(p), "refused before decoding"),
        (lambda p: Image.new("RGB", (4, 4)).save(p), "carries no generation parameters"),
    ],
    ids=["garbage", "empty", "bomb", "no-parameters"],
)
def test_hostile_images_are_refused_with_the_reason(tmp_path, make, problem):
    path = tmp_path / "dropped.png"
    make(path)
    with pytest.raises(BadInput, match=problem):
        read_info(path)


def test_a_comfyui_png_says_hearth_does_not_read_its_graph(tmp_path):
    info = PngInfo()
    info.add_text("prompt", json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}))
    info.add_text("workflow", "{}")
    path = tmp_path / "ComfyUI_00001_.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    with pytest.raises(BadInput, match="ComfyUI workflow"):
        read_info(path)


def test_a1111_jpeg_user_comment(tmp_path):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111_TEXT.encode("utf-16-be")
    path = tmp_path / "a1111.jpg"
    Image.new("RGB", (16, 16)).save(path, exif=exif)
    info = read_info(path)
    assert info.params["seed"] == 3141592 and info.params["negative_prompt"] == "blurry, lowres\nwatermark"


@pytest.mark.parametrize("name", ["notes.txt", "missing.png", "folder.png"])
def test_files_that_are_not_outputs(tmp_path, name):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(BadInput, match="not|does not exist"):
        read_info(tmp_path / name)


def test_music_tags_and_sidecar(tmp_path):
    from workers.music.export import save_audio

    params = {
        "job": "MusicRequest",
        "prompt": "lofi beat",
        "seconds": 0.5,
        "seed": 3,
        "model": "demo-musicgen",
    }
    audio = np.zeros((1, 1600), np.float32)
    tagged = save_audio(tmp_path / "tagged.flac", audio, 32000, params, sidecar=False)
    info = read_info(tagged)
    assert info.params == params and info.kind == "music" and info.source == "the audio file's comment tag"
    with_sidecar = save_audio(tmp_path / "song.wav", audio, 32000, params)
    assert read_info(with_sidecar).source == "the sidecar song.wav.json"


def test_video_comment_tag(tmp_path):
    from workers.video.export import export_video

    params = {
        "job": "VideoRequest",
        "prompt": "a cat, walking",
        "frames": 2,
        "seed": 5,
        "model": "demo-animatediff",
    }
    frames = [np.full((16, 16, 3), 40 * i, np.uint8) for i in range(2)]
    path = export_video(frames, tmp_path / "cat.mp4", 8, params, sidecar=False)
    info = read_info(path)
    assert info.params == params and info.kind == "video" and info.source == "the video's comment tag"


def test_a_wav_that_is_not_audio(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(BadInput, match="not a readable audio file"):
        read_info(path)


# --------------------------------------------------------------------------- into a request


def test_request_fields_keep_what_fits_the_schema_and_name_the_rest():
    params = {
        "prompt": "a boat",
        "negative_prompt": "fog",
        "steps": "12",  # A1111 numbers arrive as text
        "guidance": 7,
        "seed": 2**70,  # past the schema's range
        "width": 100,  # not a multiple of 8
        "height": True,  # not a number
        "model": "demo-sd",
        "out_path": "/somewhere/else.png",  # never restored
        "unknown": 1,
    }
    restored = request_fields(params, ImageRequest)
    assert restored.prompt == "a boat" and restored.negative_prompt == "fog"
    assert restored.fields == {"steps": 12, "guidance": 7.0, "model": "demo-sd"}
    assert len(restored.notes) == 3
    assert any("width must be a multiple of 8, got 100" in n for n in restored.notes)


def test_request_fields_of_another_kind_take_only_its_fields():
    restored = request_fields(
        {"prompt": "piano", "seconds": 4, "bpm": 90, "frames": 20, "width": 64}, MusicRequest
    )
    assert restored.fields == {"seconds": 4.0, "bpm": 90.0}


# --------------------------------------------------------------------------- the fuzz corpus


@corpus_params("media")
def test_media_that_crashed_other_readers_is_refused_or_read(tmp_path, case):
    path = tmp_path / ("case" + Path(case.name.removesuffix(".gz")).suffix)
    path.write_bytes(corpus_bytes(case))
    try:
        read_info(path)
    except BadInput as exc:
        assert str(exc)


@corpus_params("sidecar")
@pytest.mark.parametrize("suffix", [".png", ".wav"])
def test_sidecars_that_crashed_other_readers_are_passed_over(tmp_path, case, suffix):
    path = tmp_path / f"out{suffix}"
    if suffix == ".png":
        Image.new("RGB", (4, 4)).save(path)
    else:
        import soundfile

        soundfile.write(path, np.zeros(160, dtype=np.float32), 16000)
    (tmp_path / f"out{suffix}.json").write_bytes(corpus_bytes(case))
    try:
        info = read_info(path)
    except BadInput as exc:
        assert "carries no generation parameters" in str(exc)
    else:
        assert isinstance(info.params, dict) and isinstance(info.prompt, str)
