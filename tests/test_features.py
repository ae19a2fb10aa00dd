"""edge_aether.features against tests/reference_features.py, the real capture, and the contract.

Tolerance: float32 parity with the float64 references is 1e-5 absolute (ATOL), everywhere.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

from edge_aether.errors import ModelError
from edge_aether.features import (DEFAULT_RECIPE, FeatureRecipe, NodeFeaturiser, check_recipe, featurise_frames,
                                  featurise_iq, plan_for)
from firmware_bridge.frame import CsiFrame
from firmware_bridge.layouts import layout_for

from reference_features import ReferenceNode, knots_for, reference_features

ATOL = 1e-5

# (n_values, secondary_channel, sig_mode, bandwidth, stbc)
LAYOUT_CASES = [
    (128, 0, 0, 0, 0), (256, 0, 1, 0, 0), (384, 0, 1, 0, 1),
    (128, 2, 0, 0, 0), (256, 2, 1, 0, 0), (380, 2, 1, 0, 1), (384, 2, 1, 1, 0), (612, 2, 1, 1, 1),
    (128, 1, 0, 0, 0), (256, 1, 1, 0, 0), (376, 1, 1, 0, 1), (384, 1, 1, 1, 0), (612, 1, 1, 1, 1),
    (106, 0, None, None, None), (106, 1, None, None, None), (106, 2, None, None, None),
    (114, 0, None, None, None), (114, 2, None, None, None), (228, 0, None, None, None),
    (228, 1, None, None, None), (234, 1, None, None, None), (234, 2, None, None, None),
    (468, 1, None, None, None), (490, 0, None, None, None),
]


def _layout(case):
    n, sec, sig, bw, stbc = case
    return layout_for(n, sig, bw, sec, stbc)


def _frame(values, case=(384, 1, 1, 1, 0), **kw):
    n, sec, sig, bw, stbc = case
    return CsiFrame(node="n1", iq=np.asarray(values, np.int8), fmt="esp-csi", sig_mode=sig, bandwidth=bw,
                    secondary_channel=sec, stbc=stbc, **kw)


def _smooth_channel(rng, n_values, scale=40.0):
    """Random but smooth complex response per pair (like a real channel), as int8 imag-first values."""
    m = n_values // 2
    t = np.arange(m)
    amp = scale * (1.0 + 0.4 * np.sin(2 * np.pi * t / rng.uniform(20, 60) + rng.uniform(0, 6)))
    ph = rng.uniform(-np.pi, np.pi) - rng.uniform(0.05, 0.3) * t + 0.3 * np.sin(t / 7.0)
    h = amp * np.exp(1j * ph)
    v = np.empty(n_values)
    v[0::2] = np.round(h.imag)
    v[1::2] = np.round(h.real)
    return np.clip(v, -127, 127).astype(np.int8)


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=[f"{c[0]}-sec{c[1]}" for c in LAYOUT_CASES])
@pytest.mark.parametrize("fwi", [False, True])
def test_parity_with_reference_every_layout(case, fwi):
    rng = np.random.default_rng(case[0] * 10 + case[1] + 100 * fwi)
    lay = _layout(case)
    iq = np.stack([rng.integers(-128, 128, case[0]).astype(np.int8) for _ in range(3)]
                  + [_smooth_channel(rng, case[0]) for _ in range(3)])
    pairs, sc, targets = knots_for(case[0], case[1], fwi or lay.family == "classic")
    plan = plan_for(lay, fwi, "primary")
    # the plan keeps the contiguous run of knots its taps reach (the reference reads them all)
    lo = int(np.flatnonzero(pairs == plan.src_pairs[0])[0])
    assert np.array_equal(plan.src_pairs, pairs[lo:lo + len(plan.src_pairs)])
    assert np.array_equal(plan.targets, targets)
    for order in ("imag_first", "real_first"):
        for amp_only in (False, True):
            recipe = FeatureRecipe(iq_order=order, amplitude_only=amp_only)
            x, status = featurise_iq(iq, lay, recipe, first_word_invalid=fwi)
            assert x.dtype == np.float32 and x.shape == (6, recipe.in_dim)
            for row, vals in zip(x, iq):
                ref = reference_features(vals, pairs, sc, targets, order == "imag_first", amp_only)
                np.testing.assert_allclose(row, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", [(384, 1, 1, 1, 0), (384, 2, 1, 1, 0), (612, 1, 1, 1, 1), (234, 2, None, None, None)])
def test_ht40_decimate_parity(case):
    rng = np.random.default_rng(7)
    lay = _layout(case)
    iq = np.stack([_smooth_channel(rng, case[0]) for _ in range(4)])
    pairs, sc, targets = knots_for(case[0], case[1], lay.family == "classic", ht40="decimate")
    x, _ = featurise_iq(iq, lay, FeatureRecipe(ht40="decimate"))
    for row, vals in zip(x, iq):
        np.testing.assert_allclose(row, reference_features(vals, pairs, sc, targets), atol=ATOL, rtol=0)


def test_real_capture_parity_and_batch_equals_stream(csi_tool_frames):
    frames = list(csi_tool_frames)
    assert len(frames) == 299 and {f.n_values for f in frames} == {128, 384}
    x, status = featurise_frames(frames)
    assert np.all(status == 0) and np.isfinite(x).all()
    for fr, row in zip(frames, x):
        pairs, sc, targets = knots_for(fr.n_values, fr.secondary_channel, True)
        np.testing.assert_allclose(row, reference_features(fr.iq, pairs, sc, targets), atol=ATOL, rtol=0)
    node = NodeFeaturiser()
    one = np.concatenate([node.push(fr) for fr in frames])
    np.testing.assert_array_equal(one, x)
    # legacy (LLTF) and HT40 rows of the same link describe the same primary 20 MHz band
    amp_ht = x[[f.n_values == 384 for f in frames], :56].mean(0)
    amp_l = x[[f.n_values == 128 for f in frames], :56].mean(0)
    assert np.corrcoef(amp_ht[4:-4], amp_l[4:-4])[0, 1] > 0.8


def test_iq_orders_same_amplitudes_phases_negated():
    # imag-first reads (a, b) as b + ja = j * conj(a + jb): same modulus, phase pi/2 - phi, so the
    # sanitised phase (constant and slope removed) is exactly the negative
    rng = np.random.default_rng(3)
    for case in [(256, 0, 1, 0, 0), (384, 1, 1, 1, 0), (114, 0, None, None, None), (490, 0, None, None, None)]:
        lay = _layout(case)
        iq = np.stack([_smooth_channel(rng, case[0]) for _ in range(5)])
        a, _ = featurise_iq(iq, lay, FeatureRecipe(iq_order="imag_first"))
        b, _ = featurise_iq(iq, lay, FeatureRecipe(iq_order="real_first"))
        np.testing.assert_allclose(a[:, :56], b[:, :56], atol=ATOL, rtol=0)
        np.testing.assert_allclose(a[:, 56:], -b[:, 56:], atol=ATOL, rtol=0)


def _channel_on_subcarriers(rng, layout, scale=30.0):
    """Smooth channel as a function of each pair's subcarrier index, phase falling with frequency
    (a positive delay), as int8 imag-first values."""
    v = np.zeros(layout.n_values, np.int64).reshape(-1, 2)
    slope, p0, period = rng.uniform(0.1, 0.3), rng.uniform(-np.pi, np.pi), rng.uniform(20, 60)
    for blk in layout.blocks:
        k = blk.subcarriers.astype(np.float64) / (4.0 if blk.kind == "he20" else 1.0)
        h = scale * (1.0 + 0.4 * np.sin(2 * np.pi * k / period)) * np.exp(1j * (p0 - slope * k + 0.2 * np.sin(k / 9.0)))
        v[blk.offset:blk.offset + blk.width, 0] = np.round(h.imag)
        v[blk.offset:blk.offset + blk.width, 1] = np.round(h.real)
    return v.reshape(-1).astype(np.int8)


def _rotate(values, layout, turns_per_subcarrier, offset_turns):
    """Multiply H_k by j**(turns*k + offset) on every pair: exact in integers (quarter turns)."""
    v = values.astype(np.int64).reshape(-1, 2).copy()
    for blk in layout.blocks:
        for i, k in enumerate(blk.subcarriers):
            q = (turns_per_subcarrier * int(k) + offset_turns) % 4
            im, re = v[blk.offset + i]
            for _ in range(q):
                re, im = -im, re
            v[blk.offset + i] = (im, re)
    return v.reshape(-1).astype(np.int8)


@pytest.mark.parametrize("case", [(256, 0, 1, 0, 0), (128, 1, 0, 0, 0), (384, 1, 1, 1, 0), (384, 2, 1, 1, 0),
                                  (114, 0, None, None, None), (106, 2, None, None, None), (228, 1, None, None, None)])
def test_phase_sanitising_removes_linear_ramp_and_offset_exactly(case):
    # a timing offset is a phase ramp across subcarriers, a CFO/clock phase a constant: quarter
    # turns per subcarrier keep the int8 values exact. The base channel's phase falls across DC so
    # the ramp's half-turn over the DC hole stays inside numpy.unwrap's (-pi, pi) step
    rng = np.random.default_rng(11)
    lay = _layout(case)
    for _ in range(4):
        base = _channel_on_subcarriers(rng, lay)
        x0, _ = featurise_iq(base, lay)
        for offset in (1, 2, 3):
            x1, _ = featurise_iq(_rotate(base, lay, 1, offset), lay)
            np.testing.assert_allclose(x1, x0, atol=ATOL, rtol=0)
        x2, _ = featurise_iq(_rotate(base, lay, 0, 1), lay)       # constant offset alone
        np.testing.assert_allclose(x2, x0, atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", LAYOUT_CASES[::3], ids=[f"{c[0]}-sec{c[1]}" for c in LAYOUT_CASES[::3]])
def test_zero_and_saturated_frames_are_finite(case):
    lay = _layout(case)
    n = case[0]
    zero = np.zeros(n, np.int8)
    sat = np.where(np.arange(n) % 3 == 0, -127, 127).astype(np.int8)
    rails = np.full(n, -128, np.int8)
    x, status = featurise_iq(np.stack([zero, sat, rails]), lay)
    assert np.isfinite(x).all()
    np.testing.assert_array_equal(x[0], 0.0)
    assert status.tolist() == [1, 2, 2]


def test_node_rejects_bad_frames_without_touching_state():
    rng = np.random.default_rng(5)
    recipe = FeatureRecipe(hampel=True, normalise=0.95, hold_max=2)
    good = [_frame(_smooth_channel(rng, 384)) for _ in range(30)]
    clean, dirty = NodeFeaturiser(recipe), NodeFeaturiser(recipe)
    a = [clean.push(fr) for fr in good]
    b = []
    for i, fr in enumerate(good):
        if i == 10:
            assert dirty.push(_frame(np.zeros(384, np.int8))).shape == (0, 112)
        if i == 20:
            assert dirty.push(_frame(np.full(384, 127, np.int8))).shape == (0, 112)
        b.append(dirty.push(fr))
    for i, (ra, rb) in enumerate(zip(a, b)):
        if i in (10, 20):   # the rejected frame counts as lost: its slot is filled with the last vector
            assert rb.shape == (2, 112)
            np.testing.assert_array_equal(rb[0], b[i - 1][-1])
            rb = rb[1:]
        np.testing.assert_array_equal(ra, rb)
    st = dirty.stats()
    assert st["rejected_zero"] == 1 and st["rejected_saturated"] == 1 and st["held"] == 2
    assert np.isfinite(np.concatenate(b)).all()


def _stream(rng, n=60):
    frames = []
    for i in range(n):
        lost = int(rng.choice([0, 0, 0, 0, 1, 2, 5]))
        case = (384, 1, 1, 1, 0) if rng.random() < 0.8 else (128, 1, 0, 0, 0)
        vals = _smooth_channel(rng, case[0]) if rng.random() < 0.9 else rng.integers(-128, 128, case[0]).astype(np.int8)
        if rng.random() < 0.05:
            vals = np.zeros(case[0], np.int8)
        if rng.random() < 0.03:
            vals = np.zeros(100, np.int8)   # unknown layout
        frames.append(_frame(vals, case, lost_before=lost, reset=(i == 35)))
    return frames


RECIPES = [DEFAULT_RECIPE, FeatureRecipe(hampel=True), FeatureRecipe(normalise=0.9, hold_max=3),
           FeatureRecipe(hampel=True, normalise=0.99, hold_max=2, amplitude_only=True, iq_order="real_first")]


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.id for r in RECIPES])
def test_stream_matches_naive_reference_and_batch_equals_one_at_a_time(recipe):
    rng = np.random.default_rng(21)
    frames = _stream(rng)
    per_frame, status = featurise_frames(frames, recipe)
    ref = ReferenceNode(recipe.hampel, recipe.normalise, recipe.hold_max)
    want = []
    for fr, xv, st in zip(frames, per_frame, status):
        want += ref.push(xv, st == 0, fr.lost_before, fr.reset)
    node = NodeFeaturiser(recipe)
    one = [node.push(fr) for fr in frames]
    got = np.concatenate(one)
    np.testing.assert_allclose(got, np.array(want), atol=ATOL, rtol=0)
    many = NodeFeaturiser(recipe).push_many(frames)
    np.testing.assert_array_equal(many, got)
    assert np.isfinite(got).all()
    # a preallocated out gives the same rows, as views of out
    node2 = NodeFeaturiser(recipe)
    buf = np.empty((node2.max_rows, recipe.in_dim), np.float32)
    again = [node2.push(fr, out=buf).copy() for fr in frames]
    np.testing.assert_array_equal(np.concatenate(again), got)
    assert node.stats() == node2.stats()
    assert node.stats()["resets"] == 1


def test_reset_equals_fresh_and_frame_reset_flag():
    rng = np.random.default_rng(8)
    recipe = FeatureRecipe(hampel=True, normalise=0.9, hold_max=2)
    first = [_frame(_smooth_channel(rng, 384)) for _ in range(12)]
    second = [_frame(_smooth_channel(rng, 384), lost_before=int(i == 4)) for i in range(12)]
    used = NodeFeaturiser(recipe)
    used.push_many(first)
    used.reset()
    fresh = NodeFeaturiser(recipe)
    np.testing.assert_array_equal(used.push_many(second), fresh.push_many(second))
    flagged = NodeFeaturiser(recipe)
    flagged.push_many(first)
    second_flagged = [_frame(second[0].iq, reset=True)] + second[1:]
    np.testing.assert_array_equal(flagged.push_many(second_flagged), NodeFeaturiser(recipe).push_many(second))


def test_input_unchanged_and_same_input_same_output():
    rng = np.random.default_rng(9)
    frames = [_frame(_smooth_channel(rng, 384)) for _ in range(10)]
    copies = [fr.iq.copy() for fr in frames]
    recipe = FeatureRecipe(hampel=True, normalise=0.9)
    a = NodeFeaturiser(recipe).push_many(frames)
    node = NodeFeaturiser(recipe)
    b = np.concatenate([node.push(fr) for fr in frames])
    c = NodeFeaturiser(recipe).push_many(frames)
    featurise_frames(frames)
    for fr, cp in zip(frames, copies):
        np.testing.assert_array_equal(fr.iq, cp)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(a, b)


def test_hold_over_lost_frames():
    rng = np.random.default_rng(10)
    node = NodeFeaturiser(FeatureRecipe(hold_max=3))
    f0 = node.push(_frame(_smooth_channel(rng, 384)))
    rows = node.push(_frame(_smooth_channel(rng, 384), lost_before=2))
    assert rows.shape == (3, 112)
    np.testing.assert_array_equal(rows[0], f0[0])
    np.testing.assert_array_equal(rows[1], f0[0])
    assert node.push(_frame(_smooth_channel(rng, 384), lost_before=4)).shape == (1, 112)
    assert node.stats()["held"] == 2 and node.stats()["gaps_unfilled"] == 1
    # the first frame after a reset has nothing to hold
    assert node.push(_frame(_smooth_channel(rng, 384), lost_before=1, reset=True)).shape == (1, 112)
    assert NodeFeaturiser().push(_frame(_smooth_channel(rng, 384), lost_before=2)).shape == (1, 112)


def test_unknown_layout_is_counted_and_logged_once(caplog):
    node = NodeFeaturiser()
    with caplog.at_level(logging.WARNING, logger="edge_aether.features"):
        for _ in range(5):
            assert node.push(_frame(np.zeros(1234, np.int8))).shape == (0, 112)
    assert node.stats()["rejected_unknown_layout"] == 5
    assert sum("1234" in r.getMessage() for r in caplog.records) == 1


def test_multi_antenna_frame_uses_first_antenna():
    rng = np.random.default_rng(12)
    a0, a1 = _smooth_channel(rng, 256), _smooth_channel(rng, 256)
    two = CsiFrame(node="n", iq=np.concatenate([a0, a1]), fmt="ruview-binary", antennas=2, secondary_channel=0)
    one = CsiFrame(node="n", iq=a0, fmt="ruview-binary", secondary_channel=0)
    np.testing.assert_array_equal(NodeFeaturiser().push(two), NodeFeaturiser().push(one))


def test_recipe_identity_and_round_trips():
    assert DEFAULT_RECIPE.id == "ht20-56-ampphase-v1" and DEFAULT_RECIPE.in_dim == 112
    assert FeatureRecipe(amplitude_only=True).in_dim == 56
    for r in RECIPES + [FeatureRecipe(ht40="decimate", iq_order="real_first")]:
        assert FeatureRecipe.from_dict(r.to_dict()) == r
        assert FeatureRecipe.from_id(r.id, hold_max=r.hold_max) == r
    ids = {r.id for r in RECIPES}
    assert len(ids) == len(RECIPES)
    assert FeatureRecipe(hold_max=5).id == DEFAULT_RECIPE.id


def test_check_recipe():
    check_recipe("ht20-56-ampphase-v1", DEFAULT_RECIPE)
    check_recipe(DEFAULT_RECIPE.to_dict(), DEFAULT_RECIPE)
    with pytest.raises(ModelError, match="ht20-56-ampphase-iqre-v1.*ht20-56-ampphase-v1"):
        check_recipe("ht20-56-ampphase-iqre-v1", DEFAULT_RECIPE)
    with pytest.raises(ModelError, match="in_dim 56 vs 112"):
        check_recipe(FeatureRecipe(amplitude_only=True).to_dict(), DEFAULT_RECIPE)
    with pytest.raises(ModelError, match="no feature recipe"):
        check_recipe(None, DEFAULT_RECIPE)
    with pytest.raises(ModelError):
        check_recipe({"iq_order": "imag_first", "id": "something-else"}, DEFAULT_RECIPE)
    with pytest.raises(ModelError):
        FeatureRecipe.from_id("mystery-v1")
    with pytest.raises(ValueError):
        FeatureRecipe(normalise=1.5)
