"""edge_aether.features: a decoded CSI frame becomes a feature vector x_t (DESIGN.md section 6).

Default recipe ``ht20-56-ampphase-v1``: take the 20 MHz HT-LTF if present, else the HE-LTF, the
HT40 HT-LTF's primary half, or the LLTF; drop nulls, guards, DC and the invalid first word;
resample onto the HT20 grid -28..-1, 1..28 with a cubic (Catmull-Rom) Hermite spline; amplitude
z-scored across the 56 subcarriers; phase unwrapped across subcarriers with its least-squares
linear trend removed. x = [56 amplitudes, 56 phases], float32, in_dim 112.

Public API: ``FeatureRecipe``, ``DEFAULT_RECIPE``, ``check_recipe``, ``NodeFeaturiser`` (per node,
stateful: ``push``, ``push_many``, ``reset``, ``stats``), ``featurise_frames`` and ``featurise_iq``
(stateless batches), ``prepare`` (JIT warm-up).
"""
from .node import (STATUS_NAMES, NodeFeaturiser, TemporalState, featurise_frames, featurise_iq, frame_layout,
                   prepare)
from .plan import GRID, ResamplePlan, plan_for
from .recipe import DEFAULT_RECIPE, GRID_SIZE, FeatureRecipe, check_recipe

__all__ = [
    "DEFAULT_RECIPE",
    "GRID",
    "GRID_SIZE",
    "STATUS_NAMES",
    "FeatureRecipe",
    "NodeFeaturiser",
    "ResamplePlan",
    "TemporalState",
    "check_recipe",
    "featurise_frames",
    "featurise_iq",
    "frame_layout",
    "plan_for",
    "prepare",
]
