"""The feature recipe: what a feature vector means, recorded in every model file.

A model must never run on features it was not made for. ``FeatureRecipe.id`` is a short stable
string naming everything that changes the distribution of the features; the model file stores
``to_dict()`` and ``check_recipe`` compares it with the featuriser's recipe before the first frame.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Union

from ..errors import ConfigError, ModelError

#: The canonical HT20 grid: subcarriers -28..-1, 1..28.
GRID_SIZE = 56
#: Hampel filter: half-window (frames) and threshold (scaled MADs), fixed for recipe v1.
HAMPEL_HALF_WINDOW = 3
HAMPEL_SIGMAS = 3.0
#: Consistency constant of the MAD for Gaussian data.
MAD_SCALE = 1.4826

IQ_ORDERS = ("imag_first", "real_first")
HT40_MODES = ("primary", "decimate")
_RECIPE_VERSION = 1


@dataclass(frozen=True)
class FeatureRecipe:
    """How a CSI frame becomes a feature vector.

    Parameters
    ----------
    iq_order : {"imag_first", "real_first"}
        How each int8 pair of the buffer is read. ESP-IDF writes imaginary first (the default);
        ``"real_first"`` reproduces features of RuView's host code, which reads real first.
    amplitude_only : bool
        Keep the 56 amplitudes only (``in_dim`` 56 instead of 112).
    hampel : bool
        Causal Hampel filter over time per feature: window of the current and the 6 previous
        frames (half-window 3), a value further than 3 * 1.4826 * MAD from the window median is
        replaced by the median.
    normalise : float or None
        Forgetting factor lambda in (0, 1) of the running per-node normalisation (exponentially
        weighted mean and variance per feature, effective memory 1 / (1 - lambda) frames); None: off.
    hold_max : int
        Longest run of lost frames (from the sequence gap) filled by repeating the last vector,
        so that stream positions keep tracking time; 0: never. Longer gaps are not filled.
    ht40 : {"primary", "decimate"}
        HT40 frames: take the primary 20 MHz half of the HT-LTF (default: the same band as the
        LLTF and HT20 frames of the same node), or every second 40 MHz subcarrier (+-2..+-56).
    """

    iq_order: str = "imag_first"
    amplitude_only: bool = False
    hampel: bool = False
    normalise: Optional[float] = None
    hold_max: int = 0
    ht40: str = "primary"
    version: int = _RECIPE_VERSION

    def __post_init__(self) -> None:
        if self.iq_order not in IQ_ORDERS:
            raise ConfigError(f"features.iq_order: found {self.iq_order!r}, expected one of {IQ_ORDERS}")
        if self.ht40 not in HT40_MODES:
            raise ConfigError(f"features.ht40: found {self.ht40!r}, expected one of {HT40_MODES}")
        if self.normalise is not None:
            lam = float(self.normalise)
            if not (0.0 < lam < 1.0) or not math.isfinite(lam):
                raise ConfigError(f"features.normalise: found {self.normalise!r}, expected a forgetting "
                                  "factor strictly between 0 and 1 (e.g. 0.99), or none")
            object.__setattr__(self, "normalise", lam)
        if int(self.hold_max) != self.hold_max or self.hold_max < 0:
            raise ConfigError(f"features.hold_max: found {self.hold_max!r}, expected an integer >= 0")
        object.__setattr__(self, "hold_max", int(self.hold_max))
        if self.version != _RECIPE_VERSION:
            raise ConfigError(f"features.version: found {self.version!r}, this edge-aether makes "
                              f"version {_RECIPE_VERSION} only")

    @property
    def in_dim(self) -> int:
        """Length of the feature vector: 56 (amplitude only) or 112."""
        return GRID_SIZE if self.amplitude_only else 2 * GRID_SIZE

    @property
    def id(self) -> str:
        """Short stable identifier, e.g. ``"ht20-56-ampphase-v1"`` for the default recipe.

        It names every option that changes what the features mean (``hold_max`` does not: it
        only repeats vectors over lost frames).
        """
        parts = ["ht20", str(GRID_SIZE), "amp" if self.amplitude_only else "ampphase"]
        if self.iq_order == "real_first":
            parts.append("iqre")
        if self.ht40 == "decimate":
            parts.append("ht40dec")
        if self.hampel:
            parts.append(f"hampel{HAMPEL_HALF_WINDOW}")
        if self.normalise is not None:
            parts.append(f"norm{self.normalise:g}")
        parts.append(f"v{self.version}")
        return "-".join(parts)

    def to_dict(self) -> dict:
        """JSON-able description for model metadata (``id`` and ``in_dim`` included for readers)."""
        d = asdict(self)
        d["id"] = self.id
        d["in_dim"] = self.in_dim
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureRecipe":
        """Inverse of ``to_dict``; ``id``/``in_dim`` are checked against the options when present."""
        known = {"iq_order", "amplitude_only", "hampel", "normalise", "hold_max", "ht40", "version"}
        unknown = set(d) - known - {"id", "in_dim"}
        if unknown:
            raise ConfigError(f"feature recipe: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        r = cls(**{k: d[k] for k in known if k in d})
        if "id" in d and d["id"] != r.id:
            raise ModelError(f"feature recipe: id {d['id']!r} does not match its options (which make {r.id!r})")
        if "in_dim" in d and int(d["in_dim"]) != r.in_dim:
            raise ModelError(f"feature recipe: in_dim {d['in_dim']} does not match its options ({r.in_dim})")
        return r

    @classmethod
    def from_id(cls, rid: str, hold_max: int = 0) -> "FeatureRecipe":
        """Parse an identifier made by ``.id`` (``hold_max`` is not part of it)."""
        parts = str(rid).split("-")
        bad = ModelError(f"feature recipe id {rid!r} is not one this edge-aether makes "
                         "(expected e.g. 'ht20-56-ampphase-v1')")
        if len(parts) < 4 or parts[0] != "ht20" or parts[1] != str(GRID_SIZE) or parts[2] not in ("amp", "ampphase"):
            raise bad
        kw: dict[str, Any] = {"amplitude_only": parts[2] == "amp", "hold_max": hold_max}
        if not parts[-1].startswith("v") or not parts[-1][1:].isdigit():
            raise bad
        kw["version"] = int(parts[-1][1:])
        for tag in parts[3:-1]:
            if tag == "iqre":
                kw["iq_order"] = "real_first"
            elif tag == "ht40dec":
                kw["ht40"] = "decimate"
            elif tag == f"hampel{HAMPEL_HALF_WINDOW}":
                kw["hampel"] = True
            elif tag.startswith("norm"):
                try:
                    kw["normalise"] = float(tag[4:])
                except ValueError:
                    raise bad from None
            else:
                raise bad
        try:
            r = cls(**kw)
        except ConfigError as e:
            raise ModelError(f"feature recipe id {rid!r}: {e}") from None
        if r.id != rid:
            raise bad
        return r


DEFAULT_RECIPE = FeatureRecipe()


def check_recipe(model_recipe: Union[str, Mapping[str, Any], FeatureRecipe, None],
                 featuriser_recipe: FeatureRecipe) -> None:
    """Raise ``ModelError`` unless a model was made for the features this featuriser produces.

    Parameters
    ----------
    model_recipe : str, dict, FeatureRecipe or None
        What the model file records: the recipe id, or the ``to_dict()`` description.
    featuriser_recipe : FeatureRecipe
        The recipe the running featuriser uses.
    """
    if model_recipe is None:
        raise ModelError("the model records no feature recipe, so it cannot be checked against the "
                         f"featuriser ({featuriser_recipe.id!r}); re-export the model with its recipe")
    if isinstance(model_recipe, FeatureRecipe):
        mid, mdim = model_recipe.id, model_recipe.in_dim
    elif isinstance(model_recipe, Mapping):
        r = FeatureRecipe.from_dict(model_recipe)
        mid, mdim = r.id, r.in_dim
    elif isinstance(model_recipe, str):
        mid = model_recipe
        try:
            mdim = FeatureRecipe.from_id(mid).in_dim
        except ModelError:
            mdim = None
    else:
        raise ModelError(f"feature recipe in the model: found {type(model_recipe).__name__}, expected an "
                         "id string or a dict")
    fid = featuriser_recipe.id
    if mid != fid:
        dims = f" (in_dim {mdim} vs {featuriser_recipe.in_dim})" if mdim is not None else ""
        raise ModelError(f"feature recipe mismatch: the model was made for {mid!r} but the featuriser "
                         f"makes {fid!r}{dims}. Configure the featuriser with recipe {mid!r}, or use a "
                         f"model trained on {fid!r}.")
