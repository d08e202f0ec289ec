"""What the engine takes from mlx-lm beyond its public API, checked against the installed
mlx-lm: an upgrade that changes it fails here, by name, instead of quietly turning a
checkpoint check off (checkpoint_rules skips a check when the lookup is missing)."""

import dataclasses
import importlib
import inspect
import pkgutil
import typing

import pytest

from engine.model_classes import model_classes


def test_load_model_looks_classes_up_with_the_function_the_engine_calls():
    """mlx-lm has no public config -> classes lookup; load_model's default for it is the one
    engine.model_classes calls, so the checks see the classes load_model will build."""
    import mlx_lm.utils

    default = inspect.signature(mlx_lm.utils.load_model).parameters["get_model_classes"].default
    assert default is mlx_lm.utils._get_classes


@pytest.mark.parametrize("model_type", ["mixtral", "qwen3_moe", "qwen3_next"])
def test_model_classes_gives_the_architectures_model_and_dataclass_args(model_type):
    from mlx_lm.models.base import BaseModelArgs

    model_class, args_class = model_classes({"model_type": model_type})
    module = importlib.import_module(f"mlx_lm.models.{model_type}")
    assert (model_class, args_class) == (module.Model, module.ModelArgs)
    assert dataclasses.is_dataclass(args_class) and issubclass(args_class, BaseModelArgs)


def test_an_unknown_architecture_is_a_value_error():
    """The loader turns exactly this into UnsupportedModelError."""
    with pytest.raises(ValueError):
        model_classes({"model_type": "no_such_architecture"})


def test_every_model_args_annotation_resolves():
    """checkpoint_rules checks config.json against ModelArgs' resolved annotations and skips the
    check where they do not resolve: on the installed mlx-lm none may need the skip."""
    import mlx_lm.models

    checked, broken = 0, []
    for found in pkgutil.iter_modules(mlx_lm.models.__path__):
        try:
            module = importlib.import_module(f"mlx_lm.models.{found.name}")
        except BaseException:  # optional extras (e.g. olmo's ai2-olmo), not an architecture's args
            continue
        for name in ("ModelArgs", "TextModelArgs"):
            args = getattr(module, name, None)
            if args is None or not dataclasses.is_dataclass(args):
                continue
            checked += 1
            try:
                typing.get_type_hints(args)
            except Exception as exc:
                broken.append(f"{found.name}.{name}: {exc!r}")
    assert checked > 50  # the walk found the architectures
    assert not broken, broken
