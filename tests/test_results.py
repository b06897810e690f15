"""One test over every result class: the AnalysisResult protocol (CONTRIBUTING.md)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import warnings

import pytest

import lens_emotion
from lens_emotion.results import RESULT_MEMBERS


def _modules():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for info in pkgutil.walk_packages(lens_emotion.__path__, "lens_emotion."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            if not hasattr(module, "__moved_to__"):
                yield module


def _result_classes():
    found = {}
    for module in _modules():
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and name.endswith("Result")
                and obj.__module__ == module.__name__
                and name != "AnalysisResult"
            ):
                found[f"{module.__name__}.{name}"] = obj
    return found


RESULT_CLASSES = _result_classes()


def test_there_are_result_classes_in_every_analysis():
    packages = {path.split(".")[1] for path in RESULT_CLASSES}
    for analysis in ("inference", "probing", "patching", "attribution", "attention"):
        assert analysis in packages, f"no …Result class found in lens_emotion.{analysis}"
    for analysis in ("steering", "circuits", "geometry"):
        assert analysis in packages, f"no …Result class found in lens_emotion.{analysis}"


@pytest.mark.parametrize("path", sorted(RESULT_CLASSES))
def test_result_follows_the_protocol(path):
    cls = RESULT_CLASSES[path]
    assert dataclasses.is_dataclass(cls), f"{path} should be a (frozen) dataclass"
    assert cls.__dataclass_params__.frozen, f"{path} should be frozen"
    fields = {f.name for f in dataclasses.fields(cls)}
    table = inspect.getattr_static(cls, "table", None)
    assert "table" in fields or isinstance(table, property), (
        f"{path}.table must be an attribute (a field or a property), not a method"
    )
    for member in RESULT_MEMBERS[1:]:
        attr = inspect.getattr_static(cls, member, None)
        assert callable(attr), f"{path} lacks {member}()"
    save = inspect.signature(cls.save)
    assert list(save.parameters)[:2] == ["self", "out"], f"{path}.save(out, ...) expected"
