"""Target profiles: one declarative TOML file per device, in the top-level ``targets/`` folder
(installed as the package ``diffusionad_edge.targets``). A user's own TOML file is accepted too.

The table of backends (:data:`diffusionad_edge.runtime.backends.BACKENDS`, with the precisions each
can produce) drives validation: an unknown backend or an unsupported precision is refused before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6): the same parser as a package
    import tomli as tomllib  # type: ignore[no-redef]

from ..errors import ConfigError
from ..runtime.backends.table import BACKENDS


@dataclass(frozen=True)
class TargetProfile:
    name: str
    backend: str
    device: str
    precision: str
    precisions: tuple[str, ...]
    input_size: int
    batch: int = 1
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def check_precision(self, precision: str | None) -> str:
        """The precision to export: the profile default when None; refused when unsupported."""
        p = (precision or self.precision).lower()
        if p not in self.precisions:
            raise ConfigError(f"target {self.name} supports precisions {', '.join(self.precisions)}, not {p!r}")
        return p

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "backend": self.backend, "device": self.device, "precision": self.precision,
            "precisions": list(self.precisions), "input_size": self.input_size, "batch": self.batch,
            "description": self.description, "options": dict(self.options),
        }


def _parse(data: dict[str, Any], source: str) -> TargetProfile:
    try:
        backend = str(data["backend"])
        if backend not in BACKENDS:
            raise ConfigError(f"{source}: unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        precisions = tuple(str(p) for p in data.get("precisions", BACKENDS[backend].precisions))
        bad = set(precisions) - set(BACKENDS[backend].precisions)
        if bad:
            raise ConfigError(f"{source}: backend {backend} cannot produce {sorted(bad)}")
        profile = TargetProfile(
            name=str(data["name"]), backend=backend, device=str(data.get("device", "CPU")),
            precision=str(data.get("precision", precisions[0])), precisions=precisions,
            input_size=int(data.get("input_size", 256)), batch=int(data.get("batch", 1)),
            description=str(data.get("description", "")), options=dict(data.get("options", {})), source=source,
        )
    except KeyError as exc:
        raise ConfigError(f"{source}: target profile lacks the key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: invalid target profile: {exc}") from None
    profile.check_precision(profile.precision)
    if profile.input_size < 32 or profile.batch < 1:
        raise ConfigError(f"{source}: input_size must be >= 32 and batch >= 1")
    return profile


def _builtin_files() -> dict[str, Any]:
    folder = resources.files("diffusionad_edge.targets")
    return {f.name[: -len(".toml")]: f for f in folder.iterdir() if f.name.endswith(".toml")}


def list_targets() -> list[TargetProfile]:
    """Every built-in profile, sorted by name."""
    return [load_target(name) for name in sorted(_builtin_files())]


def load_target(name_or_path: str | Path) -> TargetProfile:
    """A built-in profile by name, or a user's TOML file by path."""
    files = _builtin_files()
    key = str(name_or_path)
    if key in files:
        text, source = files[key].read_text(), f"built-in target {key}"
    else:
        path = Path(name_or_path)
        if not path.suffix == ".toml" or not path.is_file():
            raise ConfigError(f"unknown target {key!r}: use one of {', '.join(sorted(files))} or a .toml profile file")
        text, source = path.read_text(), str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return _parse(data, source)
