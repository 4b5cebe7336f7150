"""Derived data of a decoded model, built on first use and cached per model object.

Scoring prepares model-specific data once (``ml.treewalk``'s walk layout, ``ml.score``'s float64 weights and
input bound). Models are frozen dataclasses compared by identity (``eq=False``) whose arrays are never written
after decoding, so derived data stays valid for the object's lifetime. The cache holds the model weakly: the
derived data dies with it. A concurrent first use just builds an identical value twice.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

M = TypeVar("M")
D = TypeVar("D")


class PerModel(Generic[M, D]):
    """``PerModel(build)(model)`` -> ``build(model)``, computed once per model object."""

    def __init__(self, build: Callable[[M], D]) -> None:
        self._build = build
        self._cache: weakref.WeakKeyDictionary[M, D] = weakref.WeakKeyDictionary()
        self.__doc__ = build.__doc__

    def __call__(self, model: M) -> D:
        hit = self._cache.get(model)
        if hit is None:
            hit = self._build(model)
            self._cache[model] = hit
        return hit
