"""Typed reads of environment variables, each failure a one-line ConfigError naming the variable
(used by settings.py, which declares what is read)."""

from __future__ import annotations

from collections.abc import Mapping

from connector.errors import ConfigError


class EnvReader:
    """Typed access to the environment with one-line errors that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self._env.get(name, "").strip()
        if not value:
            if required:
                raise ConfigError(f"{name} is required")
            return None
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str, upper: bool = False) -> str:
        value = self.text(name) or default
        value = value.upper() if upper else value.lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.text(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false; got {value!r}")

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number; got {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(f"{name} must be between {low} and {high}; got {number}")
        return number

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        value = self.optional_number(name, low=low, high=high)
        return default if value is None else value

    def optional_number(self, name: str, *, low: float, high: float) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number; got {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(f"{name} must be between {low:g} and {high:g}; got {number:g}")
        return number
