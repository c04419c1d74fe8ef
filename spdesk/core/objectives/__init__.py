"""Attack objectives behind one interface (see ``base.py``), built by name.

``build_objectives("encoder")`` or ``build_objectives("encoder,latent", {"target": "grey"})``;
options are passed to every objective that accepts them. Objectives living in modules that need
extra models (``sds+``, ``sds-``, ``advdm``) are imported only when asked for.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from spdesk.core.errors import ObjectiveError

if TYPE_CHECKING:
    from spdesk.core.objectives.base import Objective

# name -> "module:Class"; the class is built with Class.create(name, options).
REGISTRY: dict[str, str] = {
    "encoder": "spdesk.core.objectives.encoder:EncoderObjective",
    "latent": "spdesk.core.objectives.latent:LatentObjective",
    "pca+": "spdesk.core.objectives.pca:PosteriorCollapse",
    "pca-": "spdesk.core.objectives.pca:PosteriorCollapse",
    "sds+": "spdesk.core.objectives.sds:SdsObjective",
    "sds-": "spdesk.core.objectives.sds:SdsObjective",
    "advdm": "spdesk.core.objectives.advdm:AdvDmObjective",
}


def _accepted(cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def build_objective(name: str, options: Mapping[str, Any] | None = None) -> Objective:
    """One objective by its CLI name; unknown or unavailable names raise ObjectiveError."""
    if name not in REGISTRY:
        raise ObjectiveError(
            f"Unknown objective {name!r}.", hint=f"Choose one of: {', '.join(REGISTRY)}."
        )
    module_name, _, class_name = REGISTRY[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ObjectiveError(f"Objective {name!r} is not available in this build.") from error
    objective: Objective = cls.create(name, _accepted(cls, options or {}))
    return objective


def build_objectives(spec: str, options: Mapping[str, Any] | None = None) -> list[Objective]:
    """Comma-separated names -> objectives (their losses are summed)."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if not names:
        raise ObjectiveError("No objective given.", hint=f"Choose from: {', '.join(REGISTRY)}.")
    return [build_objective(name, options) for name in names]


def objectives_with_models(spec: str, options: Mapping[str, Any] | None = None) -> list[Objective]:
    """:func:`build_objectives`, each model they load on first use found installed: a missing
    one (SD 1.5's UNet, for sds+, sds- and advdm) raises ModelMissingError now, before any
    encoder loads or photo is read, not at the first step."""
    objectives = build_objectives(spec, options)
    for objective in objectives:
        objective.check_models()
    return objectives
