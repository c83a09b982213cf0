"""What the SDK keeps on this machine: where its cache lives."""

from __future__ import annotations

import os

from straightline_sdk import calibration, local_state


def test_the_cache_folder_follows_straightline_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STRAIGHTLINE_CACHE_DIR", str(tmp_path / "cache"))
    path = local_state.cache_dir("docker", "workers")
    assert path == str(tmp_path / "cache" / "docker" / "workers")
    assert os.stat(path).st_mode & 0o777 == 0o700
    # calibration results go under the same root
    assert calibration._cache_path("k" * 40).startswith(str(tmp_path / "cache"))


def test_without_it_the_cache_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("STRAIGHTLINE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert local_state.cache_dir("x") == str(tmp_path / "straightline" / "x")
