"""Layered Diffusion Brushes properties a user relies on, on the tiny seeded demo model (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.brush_fixtures import (
    STEPS,
    UnetCounter,
    Untouched,
    base_session,
    box_mask,
    fresh_session,
    layer,
    tiny_pipeline,
)


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def base(pipe):
    """The base run, made once: tests only read it (each renders on its own ``fresh_session``)."""
    untouched = Untouched(base_session(pipe))
    yield untouched.session
    untouched.check()


@pytest.fixture
def session(base):
    return fresh_session(base)


def _union_outside(session, layers):
    union = torch.zeros((1, 1, *session.trajectory.latents.shape[-2:]), dtype=torch.bool)
    for item in layers:
        union |= session.latent_mask(item) > 0
    return ~union.expand(1, session.trajectory.latents.shape[1], -1, -1)


def test_latents_outside_visible_masks_are_bit_identical(session):
    layers = [
        layer("a", box_mask(4, 4, 20, 24)),
        layer("b", box_mask(36, 30, 60, 60), prompt="a dog", seed=9),
    ]
    result = session.render(layers)
    outside = _union_outside(session, layers)
    original = session.trajectory.latents[-1:]
    assert outside.any() and (~outside).any()
    assert torch.equal(result.latents[outside], original[outside])
    assert not torch.equal(result.latents[~outside], original[~outside])  # the edit did something
    base, edited = np.asarray(session.base_image), np.asarray(result.image)
    untouched = np.ones((64, 64), bool)
    untouched[:30, :30] = untouched[28:, 24:] = False
    assert np.array_equal(base[untouched], edited[untouched])


def test_disjoint_layers_commute(base):
    first = layer("a", box_mask(2, 2, 22, 22), prompt="a cat")
    second = layer("b", box_mask(40, 40, 62, 62), prompt="a dog", seed=11, opacity=0.7)
    one, other = fresh_session(base), fresh_session(base)
    forward, backward = one.render([first, second]), other.render([second, first])
    assert torch.equal(forward.latents, backward.latents)
    assert np.array_equal(np.asarray(forward.image), np.asarray(backward.image))


def test_hiding_a_layer_gives_exactly_the_composite_without_it(session, base):
    first = layer("a", box_mask(2, 2, 22, 22))
    second = layer("b", box_mask(36, 36, 62, 62), prompt="a dog", seed=5)
    hidden = session.render([first, second.with_changes(visible=False)])
    fresh = fresh_session(base).render([first])
    assert torch.equal(hidden.latents, fresh.latents)
    assert np.array_equal(np.asarray(hidden.image), np.asarray(fresh.image))
    all_hidden = session.render([first.with_changes(visible=False)])
    assert np.array_equal(np.asarray(all_hidden.image), np.asarray(session.base_image))


def test_an_edit_reruns_only_the_last_steps_of_the_changed_layer(session, pipe):
    counter = UnetCounter(pipe)
    try:
        kept = layer("a", box_mask(2, 2, 22, 22), regen_step=2)
        edited = layer("b", box_mask(36, 36, 62, 62), regen_step=4)
        session.render([kept, edited])
        counter.reset()
        result = session.render([kept, edited.with_changes(prompt="a blue vase")])
        n = edited.regen_step
        assert counter.calls == result.unet_calls <= (STEPS - n) + 2
        counter.reset()
        session.render([kept, edited.with_changes(prompt="a blue vase", opacity=0.5)])
        assert counter.calls <= 2  # opacity reruns only the merge, not the branch
        counter.reset()
        session.render([kept, edited.with_changes(prompt="a blue vase")])
        assert counter.calls == 0  # the same composite again comes from the cache
    finally:
        counter.close()


def test_same_seed_same_output_and_another_seed_differs(base, pipe):
    mask = box_mask(10, 10, 40, 40)
    first = fresh_session(base).render([layer("a", mask, seed=21)])
    again = base_session(pipe).render([layer("a", mask, seed=21)])  # the base run again, from its seed
    other = fresh_session(base).render([layer("a", mask, seed=22)])
    assert torch.equal(first.latents, again.latents)
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    assert not torch.equal(first.latents, other.latents)


def test_overlapping_layers_upper_covers_lower(session):
    lower = layer("low", box_mask(10, 10, 40, 40), prompt="a cat", feather=0)
    upper = layer("up", box_mask(10, 10, 40, 40), prompt="a dog", seed=3, feather=0)
    stacked = session.render([lower, upper])
    alone = session.render([upper])
    assert torch.equal(stacked.latents, alone.latents)  # an opaque upper layer hides the lower one


def test_progress_reports_every_unet_step_with_a_region_preview(session):
    seen = []
    item = layer("a", box_mask(8, 8, 24, 24), regen_step=3)
    session.render([item], on_step=lambda step, total, preview: seen.append((step, total, preview)))
    assert [s for s, _, _ in seen] == list(range(1, STEPS - 3 + 1))
    assert all(total == STEPS - 3 for _, total, _ in seen)
    for _, _, preview in seen:  # the edited region only: transparent elsewhere
        alpha = np.asarray(preview.getchannel("A"))
        assert alpha[0, 0] == 0 and alpha[alpha.shape[0] // 4, alpha.shape[1] // 4] == 255
