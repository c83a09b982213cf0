"""Settings files: a project's ``pyproject.toml`` and the user's ``config.toml``.

Where the Python ecosystem looks for a tool's settings:

- the project's: the ``[tool.straightline]`` table of the nearest
  ``pyproject.toml`` from the working directory up;
- the user's: ``$XDG_CONFIG_HOME/straightline/config.toml`` (default
  ``~/.config/straightline/config.toml``), the same keys at its top level.

Both hold the same keys as ``configure()``::

    [tool.straightline]
    targets = ["local", "docker", "lambda"]
    rate_threshold = 20          # F, requests per second
    size_threshold = "4MB"       # D
    rate_window_s = 5
    progress = true

    [tool.straightline.options.docker]
    base_image = "python:3.11-slim"

This module only finds and reads the files (tomllib); config.py validates what
they say with the same parsers as every other source.
"""

from __future__ import annotations

import os
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

USER_FILE_ENV = "STRAIGHTLINE_CONFIG"   # a different user file (or "" for none)


class SettingsFileError(ValueError):
    """A settings file that cannot be read."""


def user_file(env=os.environ) -> str | None:
    """The user's settings file, if it exists."""
    if USER_FILE_ENV in env:
        path = env[USER_FILE_ENV]
        return path if path and os.path.isfile(path) else None
    root = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    path = os.path.join(root, "straightline", "config.toml")
    return path if os.path.isfile(path) else None


def project_file(start: str | None = None) -> str | None:
    """The nearest ``pyproject.toml`` from ``start`` (the working directory) up
    that has a ``[tool.straightline]`` table."""
    try:
        folder = os.path.abspath(start or os.getcwd())
    except OSError:   # the working directory was removed
        return None
    while True:
        path = os.path.join(folder, "pyproject.toml")
        if os.path.isfile(path):
            try:
                if "straightline" in _read(path).get("tool", {}):
                    return path
            except SettingsFileError:
                return path   # broken: say so when it is read
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _read(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsFileError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsFileError(f"{path} cannot be read: {exc.strerror or exc}") from None


def read_user(path: str) -> dict:
    return _read(path)


def read_project(path: str) -> dict:
    table = _read(path).get("tool", {}).get("straightline", {})
    if not isinstance(table, dict):
        raise SettingsFileError(f"{path}: [tool.straightline] must be a table")
    return table


__all__ = ["SettingsFileError", "USER_FILE_ENV", "project_file", "read_project", "read_user",
           "user_file"]
