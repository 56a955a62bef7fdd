"""Registries of named, versioned, configurable classes: the audio backbones (`embedders.base.BACKBONES`) and
the recommenders (`recommenders.base.RECOMMENDERS`).

A registered class declares, once, on itself:
- `name`: what an experiment file calls it;
- `version`: bumped whenever its outputs change (part of the Dagster code version and of fit fingerprints);
- `Options`: a frozen dataclass of its options; the constructor takes them as keywords
  (`Configurable.__init__`), a saved model's `config.json` stores them and `load` rebuilds from them;
- `needs_gpu`: whether a GPU pays off (the step joins the `gpu` pool and requests a GPU on Kubernetes).
Each registry adds its own declarations (backbones: audio or not, tag names; recommenders: content, cold
start, side tables).

Every module of the registry's package is imported on the first lookup of a name not yet registered, so a
new class is one module in the package; a class elsewhere (a test, a user's plugin) registers when its module
is imported. A lookup that names the class's module (`get(name, module=...)`) imports that module alone.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Generic, TypeVar


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of a class that has none."""


class Configurable:
    """Base of registered classes: `self.options` is an instance of the class's `Options` dataclass."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    Options: ClassVar[type] = NoOptions
    needs_gpu: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        allowed = option_names(type(self))
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise TypeError(f"{self.name}: unknown option(s) {unknown}; allowed: {list(allowed)}")
        missing = [name for name in required_options(type(self)) if name not in options]
        if missing:
            raise TypeError(f"{self.name}: missing required option(s) {missing}")
        self.options = self.Options(**options)

    def options_dict(self) -> dict[str, Any]:
        """The options as a JSON-ready dict (what `config.json` stores)."""
        return dataclasses.asdict(self.options)


def option_names(cls: type[Configurable]) -> tuple[str, ...]:
    """The option names a class accepts, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls.Options))


def required_options(cls: type[Configurable]) -> tuple[str, ...]:
    """The options of a class that have no default (the constructor needs them)."""
    return tuple(f.name for f in dataclasses.fields(cls.Options)
                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def options_digest(options: Mapping[str, Any] | Any) -> str:
    """A short stable hash of an options dataclass or mapping (12 hex characters)."""
    as_dict = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
    return hashlib.sha256(json.dumps(as_dict, sort_keys=True, default=str).encode()).hexdigest()[:12]


def code_version(cls: type[Configurable], options: Any) -> str:
    """The Dagster code version of a step running `cls` with `options`: its version and an options digest, so
    that bumping the class's version or changing an option reruns exactly the assets built from it."""
    return f"{cls.version}:{options_digest(options)}"


T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """name -> class for one kind of component (`kind`, e.g. "backbone"), filled by the `register` decorator;
    the modules of `package` are imported on first lookup so that every built-in class is registered."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind, self.package = kind, package
        self._classes: dict[str, T] = {}
        self._discovered = False

    def register(self, cls: T) -> T:
        """Class decorator: add `cls` under `cls.name`. A second class of the same name raises ValueError."""
        existing = self._classes.get(cls.name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"{self.kind} {cls.name!r} registered twice ({existing.__module__} and {cls.__module__})")
        self._classes[cls.name] = cls
        return cls

    def _discover(self) -> None:
        if not self._discovered:
            self._discovered = True
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.package}.{module.name}")

    def get(self, name: str, module: str | None = None) -> T:
        """The class registered as `name`; KeyError naming the known ones. With `module` (where the class is
        defined), that module alone is imported first, and the package's other modules only if it does not
        register `name`: a lookup then costs one module's imports, not every class's."""
        if module is not None and name not in self._classes:
            try:
                importlib.import_module(module)
            except ImportError:
                pass  # moved or renamed since it was recorded: discovery below finds the class or names the known
        if name not in self._classes:
            self._discover()
        if name not in self._classes:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {sorted(self._classes)}")
        return self._classes[name]

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        self._discover()
        return iter(sorted(self._classes))
