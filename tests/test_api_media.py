"""Images, image edits, video and music over the API, through the official client and real workers."""

from __future__ import annotations

import base64
import io
import stat

import httpx2 as httpx
import numpy as np
import openai
import pytest
import soundfile
from PIL import Image

from app.api.keys import key_path
from tests.api_helpers import running_api
from workers.protocol import WorkerKind

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings(
        "ignore:The Sora API:DeprecationWarning"
    ),  # the client's note on OpenAI's own service
]


@pytest.fixture(scope="module")
def running(isolated_hearth_env):
    with running_api([WorkerKind.image, WorkerKind.video, WorkerKind.music], start_timeout=300) as running:
        yield running


@pytest.fixture
def api(running):
    yield running
    running.close_clients()  # so each test's connections end with it


def png_of(item) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item.b64_json)))


def test_generated_image_is_a_png_carrying_its_prompt(api):
    result = api.client().images.generate(
        prompt="a lighthouse at dusk", size="64x64", extra_body={"steps": 4, "seed": 7}
    )
    image = png_of(result.data[0])
    assert image.format == "PNG" and image.size == (64, 64)
    assert "a lighthouse at dusk" in image.text["parameters"]
    assert "Steps: 4" in image.text["parameters"]


def test_an_image_url_is_served_from_the_loopback_server_without_the_key(api):
    result = api.client().images.generate(
        prompt="a red kite", size="64x64", response_format="url", extra_body={"steps": 3}
    )
    url = result.data[0].url
    assert url.startswith(api.server.base_url + "/v1/files/")
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.content.startswith(b"\x89PNG")
    assert httpx.get(api.server.base_url + "/v1/files/not-a-token").status_code == 404


def test_two_images_at_once_differ(api):
    result = api.client().images.generate(prompt="a tree", n=2, size="64x64", extra_body={"steps": 3})
    first, second = (np.asarray(png_of(item)) for item in result.data)
    assert first.shape == second.shape and not np.array_equal(first, second)


def test_an_edit_changes_pixels_only_inside_the_mask(api, tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    photo_path = tmp_path / "photo.png"
    Image.fromarray(photo).save(photo_path)
    alpha = np.full((64, 64), 255, np.uint8)
    alpha[16:48, 16:48] = 0  # OpenAI's masks: fully transparent pixels are edited
    mask_path = tmp_path / "mask.png"
    Image.fromarray(np.dstack([np.zeros((64, 64, 3), np.uint8), alpha]), "RGBA").save(mask_path)
    with open(photo_path, "rb") as image, open(mask_path, "rb") as mask:
        result = api.client().images.edit(
            image=image, mask=mask, prompt="a window", extra_body={"steps": 8, "feather": 0}
        )
    edited = np.asarray(png_of(result.data[0]).convert("RGB"))
    outside = alpha == 255
    assert np.array_equal(edited[outside], photo[outside])  # bit-identical where the mask keeps
    assert not np.array_equal(edited[~outside], photo[~outside])


def test_an_edit_of_a_size_no_model_takes_is_refused_by_name(api, tmp_path):
    path = tmp_path / "odd.png"
    Image.new("RGB", (60, 64)).save(path)
    with open(path, "rb") as image, pytest.raises(openai.BadRequestError, match="multiples of 8"):
        api.client().images.edit(image=image, prompt="x")


def test_a_video_job_completes_and_its_content_is_an_mp4(api):
    client = api.client()
    video = client.videos.create(
        prompt="waves on a beach", seconds="1", size="64x64", extra_body={"fps": 4, "steps": 2}
    )
    assert video.status in ("queued", "in_progress")
    done = client.videos.poll(video.id, poll_interval_ms=200)
    assert done.status == "completed", done.error
    content = client.videos.download_content(video.id).read()
    assert content[4:8] == b"ftyp"  # an MP4's first box


def test_music_returns_a_wav_of_the_asked_length(api):
    headers = {"Authorization": f"Bearer {api.server.key}"}
    response = httpx.post(
        api.base_url + "/audio/music",
        headers=headers,
        timeout=300,
        json={"prompt": "calm piano", "seconds": 2.0, "format": "wav"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    audio, rate = soundfile.read(io.BytesIO(response.content))
    assert abs(len(audio) / rate - 2.0) < 0.05


def test_a_bad_music_field_is_a_400_naming_it(api):
    headers = {"Authorization": f"Bearer {api.server.key}"}
    response = httpx.post(
        api.base_url + "/audio/music", headers=headers, json={"prompt": "x", "seconds": 99999}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "seconds"


def test_the_server_listens_on_loopback_and_the_key_file_is_private(api):
    assert api.server.bound[0] == "127.0.0.1"
    assert stat.S_IMODE(key_path().stat().st_mode) == 0o600


def test_models_lists_every_kind_with_a_fit_verdict(api):
    models = {m.id: m for m in api.client().models.list().data}
    kinds = {m.model_extra["kind"] for m in models.values()}
    assert kinds == {"chat", "image", "video", "music"}
    assert models["demo-sd"].model_extra["fit"]["verdict"] in ("fits", "fits_reduced", "cpu_only", "wont_fit")


def test_an_image_takes_a_sampler_but_never_a_path_on_this_machine(api):
    result = api.client().images.generate(
        prompt="a red kite", size="64x64", extra_body={"steps": 2, "sampler": "DPM++ 2M Karras"}
    )
    assert "Sampler: DPM++ 2M Karras" in png_of(result.data[0]).text["parameters"]
    headers = {"Authorization": f"Bearer {api.server.key}"}
    for field, value in (("init_image", "/etc/hostname"), ("loras", "/etc/hostname:1"), ("upscale", 2)):
        response = httpx.post(
            api.base_url + "/images/generations", headers=headers, json={"prompt": "x", field: value}
        )
        assert response.status_code == 400, field
        assert response.json()["error"]["param"] == field
