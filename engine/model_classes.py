"""mlx-lm's lookup from a config.json to its architecture's Model and ModelArgs classes.

mlx-lm has no public function for this: `load_model` does the lookup itself, through its
`get_model_classes` parameter whose default is the private `mlx_lm.utils._get_classes`. The
checkpoint checks need the classes without loading weights, so they call that default here,
in one place; tests/engine/test_mlx_lm_contract.py fails if mlx-lm changes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlx_lm.models.base import BaseModelArgs


def model_classes(config: dict) -> tuple[type, type[BaseModelArgs]]:
    """(Model, ModelArgs) of the config's architecture, as mlx-lm's load_model picks them;
    ValueError when mlx-lm has no such architecture. Imports mlx-lm (and transformers) on
    first use, so modules that only read headers stay quick to import."""
    from mlx_lm.utils import _get_classes

    return _get_classes(dict(config))
