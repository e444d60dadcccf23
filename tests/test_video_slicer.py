"""Streamlined Inference on the demo AnimateDiff UNet: slicing + grouping is exact, Step Rehash off
is bit-identical and on skips exactly the planned deep blocks; the memory plan picks what fits."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from models.video import build_demo_animatediff  # noqa: E402
from workers.errors import BadInput  # noqa: E402
from workers.video.memory_plan import (  # noqa: E402
    VideoPlan,
    VideoShape,
    parse_memory_mode,
    plan_for_budget,
    plans,
    smaller_decode,
)
from workers.video.rehash import StepRehash, search_key_steps, uniform_key_steps  # noqa: E402
from workers.video.slicer import VideoSlicer  # noqa: E402

pytestmark = pytest.mark.timeout(240)
FRAMES = 8


@pytest.fixture(scope="module")
def pipe():
    pipe = build_demo_animatediff(seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _unet_inputs(seed: int = 0, size: int = 16):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn((2, 4, FRAMES, size, size), generator=generator)  # (B, C, F, h, w), CFG batch
    text = torch.randn((2, 77, 32), generator=generator).repeat_interleave(FRAMES, dim=0)  # (B*F, L, D)
    return sample, torch.tensor(601), text


@pytest.mark.parametrize("frame_slices,spatial_slices", [(1, 1), (3, 5), (16, 16)])
def test_sliced_grouped_unet_equals_unsliced(pipe, frame_slices, spatial_slices):
    sample, t, text = _unet_inputs()
    with torch.no_grad():
        reference = pipe.unet(sample, t, encoder_hidden_states=text).sample
        with VideoSlicer(pipe.unet, frame_slices, spatial_slices):
            sliced = pipe.unet(sample, t, encoder_hidden_states=text).sample
        after = pipe.unet(sample, t, encoder_hidden_states=text).sample
    assert (sliced - reference).abs().max() < 1e-4
    assert torch.equal(after, reference), "removing the slicer must restore the stock forward exactly"


def test_motion_module_groupnorm_needs_whole_tensor_statistics(pipe):
    """Why the slicer computes GroupNorm statistics first: a naive H slice changes the output."""
    motion = pipe.unet.down_blocks[0].motion_modules[0]
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn((2 * FRAMES, 32, 16, 16), generator=generator) * 3 + 1
    with torch.no_grad():
        whole = motion(hidden, num_frames=FRAMES)
        naive = torch.cat(
            [motion(hidden[..., :8, :], num_frames=FRAMES), motion(hidden[..., 8:, :], num_frames=FRAMES)],
            dim=2,
        )
        exact = VideoSlicer(pipe.unet, 1, 2).temporal(motion, hidden.clone(), FRAMES)
    assert (naive - whole).abs().max() > 1e-4
    assert (exact - whole).abs().max() < 1e-5


def _render(pipe, steps: int = 4, **kwargs):
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        return pipe(
            "a cat playing piano",
            num_frames=FRAMES,
            height=32,
            width=32,
            num_inference_steps=steps,
            guidance_scale=7.5,
            generator=generator,
            output_type="latent",
            **kwargs,
        ).frames


def test_sliced_pipeline_final_latents_match_stock(pipe):
    stock = _render(pipe, steps=2)
    with VideoSlicer(pipe.unet, 4, 4):
        sliced = _render(pipe, steps=2)
    assert (sliced - stock).abs().max() < 1e-4


def _count_block_runs(pipe) -> tuple[dict, list]:
    """Counts runs of every top-level UNet block's first resnet (once per frame slice when sliced)."""
    unet = pipe.unet
    blocks = {f"down_blocks.{i}": b for i, b in enumerate(unet.down_blocks)}
    blocks["mid_block"] = unet.mid_block
    blocks.update({f"up_blocks.{i}": b for i, b in enumerate(unet.up_blocks)})
    counts = dict.fromkeys(blocks, 0)
    handles = []
    for name, block in blocks.items():

        def bump(*_, name=name):
            counts[name] += 1

        handles.append(block.resnets[0].register_forward_hook(bump))
    return counts, handles


def test_step_rehash_off_is_bit_identical(pipe):
    stock = _render(pipe)
    with StepRehash(pipe.unet, uniform_key_steps(4, interval=1)) as rehash:
        every_step_key = _render(pipe)
    assert torch.equal(every_step_key, stock)
    assert rehash.skipped == {}
    assert torch.equal(_render(pipe), stock), "removing Step Rehash must leave the UNet unchanged"


@pytest.mark.parametrize("sliced", [False, True])
def test_step_rehash_skips_exactly_the_planned_blocks(pipe, sliced):
    steps, keys, slices = 5, uniform_key_steps(5, interval=2), 2 if sliced else 1
    assert keys == {0, 2, 4}
    counts, handles = _count_block_runs(pipe)
    try:
        with VideoSlicer(pipe.unet, slices, slices) as slicer:
            with StepRehash(pipe.unet, keys, slicer=slicer) as rehash:
                latents = _render(pipe, steps=steps)
    finally:
        for handle in handles:
            handle.remove()
    deep = {"down_blocks.1", "mid_block", "up_blocks.0"}
    for name, count in counts.items():
        assert count == (len(keys) if name in deep else steps) * slices, name
    assert set(rehash.skipped) == deep and all(n == steps - len(keys) for n in rehash.skipped.values())
    assert torch.isfinite(latents).all()


def test_key_step_search_marks_steps_whose_deep_features_drifted():
    similarities = [1.0, 0.99, 0.97, 0.90, 0.99, 0.80]
    assert search_key_steps(similarities, threshold=0.95) == {0, 3, 5}
    assert search_key_steps([0.1, 0.2], threshold=0.0) == {0}


SHAPE = VideoShape(
    family="animatediff",
    batch=2,
    frames=16,
    height=512,
    width=512,
    latent_scale=8,
    base_channels=320,
    vae_channels=512,
    dtype_bytes=2,
    weights_bytes=2_000_000_000,
)


def test_memory_plan_tiers_go_from_fast_and_large_to_slow_and_small():
    tiers = plans(SHAPE)
    assert [t.tier for t in tiers] == ["resident", "sliced", "lean"]
    assert tiers[0].bytes > tiers[1].bytes > tiers[2].bytes
    assert tiers[0].est_step_s < tiers[2].est_step_s


def test_memory_plan_chooses_fewest_slices_that_fit_the_budget():
    assert plan_for_budget(SHAPE, 10**12).tier == "resident"
    roomy, tight = (
        plan_for_budget(SHAPE, plans(SHAPE)[1].bytes),
        plan_for_budget(SHAPE, plans(SHAPE)[2].bytes),
    )
    assert roomy.sliced and roomy.bytes <= plans(SHAPE)[1].bytes
    assert tight.bytes <= plans(SHAPE)[2].bytes
    assert plan_for_budget(SHAPE, 1).tier == "lean"


def test_decode_retry_ladder_halves_chunks_then_tiles_then_gives_up():
    plan = VideoPlan("sliced", 4, 4, decode_chunk=4)
    ladder = []
    while plan is not None:
        ladder.append((plan.decode_chunk, plan.vae_tiling))
        plan = smaller_decode(plan)
    assert ladder == [(4, False), (2, False), (1, False), (1, True)]


@pytest.mark.parametrize("mode", ["slices:0", "slices:x", "fast", "slices:"])
def test_memory_mode_must_be_auto_or_slices(mode):
    with pytest.raises(BadInput, match="memory mode"):
        parse_memory_mode(mode)
    assert parse_memory_mode("slices:3") == 3 and parse_memory_mode("auto") == 0
