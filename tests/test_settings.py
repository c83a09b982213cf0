"""Settings from every place, in order: configure() > environment > the project's
pyproject.toml > the user's config.toml > defaults; each read the same way, and
``straightline config`` says where each came from."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import straightline_sdk as straightline
from straightline_sdk import config
from straightline_sdk.cli import _shown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A user config folder and a project folder (the working directory, one level
    below its pyproject.toml); no STRAIGHTLINE_* variables."""
    for key in list(os.environ):
        if key.startswith("STRAIGHTLINE_") and key != "STRAIGHTLINE_CACHE_DIR":
            monkeypatch.delenv(key)
    home = tmp_path / "config"
    (home / "straightline").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    monkeypatch.chdir(project / "notebooks")
    user_file = home / "straightline" / "config.toml"
    pyproject = project / "pyproject.toml"
    yield user_file, pyproject
    monkeypatch.undo()
    straightline.configure(reset=True)


def write(path, text):
    path.write_text(textwrap.dedent(text))


def test_each_place_overrides_the_ones_below_it(places, monkeypatch):
    user_file, pyproject = places
    write(user_file, """
        rate_threshold = 5
        size_threshold = "1MB"
        targets = ["local", "docker", "lambda"]
        rate_window_s = 2
        [options.lambda]
        region = "eu-west-1"
        memory_mb = 1024
    """)
    write(pyproject, """
        [project]
        name = "analysis"
        [tool.straightline]
        size_threshold = "2MB"
        targets = ["local", "lambda"]
        [tool.straightline.options.lambda]
        memory_mb = 2048
    """)
    monkeypatch.setenv("STRAIGHTLINE_TARGETS", "local")
    s = straightline.configure(reset=True, rate_window_s=3)
    assert s.rate_threshold == 5.0                 # user file
    assert s.size_threshold == 2 * 1024 ** 2       # project over user
    assert s.targets == ("local",)                 # environment over project
    assert s.rate_window_s == 3.0                  # configure() over all
    options = s.target_options("lambda")
    assert (options.region, options.memory_mb) == ("eu-west-1", 2048)   # merged per option
    assert s.source("rate_threshold") == str(user_file)
    assert s.source("size_threshold") == f"{pyproject} [tool.straightline]"
    assert s.source("targets") == "environment STRAIGHTLINE_TARGETS"
    assert s.source("rate_window_s") == "configure()"
    assert s.source("options.lambda.region") == str(user_file)
    assert s.source("progress") == "default"


def test_a_misspelt_key_in_a_file_is_refused_with_the_file_and_the_closest_name(places):
    _, pyproject = places
    write(pyproject, """
        [tool.straightline]
        rate_treshold = 10
    """)
    with pytest.raises(config.SettingsError, match=r"'rate_treshold' in .*pyproject.toml.*did you mean 'rate_threshold'"):
        straightline.configure(reset=True)


def test_file_options_are_typed_like_every_other_source(places):
    user_file, _ = places
    write(user_file, """
        [options.ray]
        start_local = "maybe"
    """)
    with pytest.raises(ValueError, match=r"config.toml\): 'maybe' is not a yes/no value"):
        straightline.configure(reset=True)
    write(user_file, """
        [options.ray]
        start_local = "yes"
        num_cpus = 2
    """)
    options = straightline.configure(reset=True).target_options("ray")
    assert options.start_local is True and options.num_cpus == 2.0


def test_a_bad_value_or_a_broken_file_says_where(places):
    user_file, pyproject = places
    write(user_file, 'size_threshold = "lots"\n')
    with pytest.raises(config.SettingsError, match=r"size_threshold from .*config.toml: not a size"):
        straightline.configure(reset=True)
    write(user_file, "")
    write(pyproject, "[tool.straightline\n")
    with pytest.raises(config.SettingsError, match="is not valid TOML"):
        straightline.configure(reset=True)


def test_a_refused_configure_changes_nothing(places):
    before = straightline.configure(reset=True, rate_threshold=7)
    with pytest.raises(ValueError):
        straightline.configure(rate_threshold=1, targets=["local", "nowhere"])
    assert straightline.settings() is before and before.rate_threshold == 7


def test_a_project_file_without_the_table_is_passed_over(places):
    user_file, pyproject = places
    write(pyproject, '[project]\nname = "x"\n')
    write(user_file, "rate_threshold = 9\n")
    assert straightline.configure(reset=True).rate_threshold == 9.0


def _cli(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", "straightline_sdk.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_straightline_config_prints_each_setting_and_where_it_came_from(places, tmp_path):
    user_file, pyproject = places
    write(pyproject, """
        [tool.straightline]
        targets = ["local", "docker", "ray"]
        [tool.straightline.options.docker]
        base_image = "python:3.11-slim"
    """)
    env = {**os.environ, "PYTHONPATH": ROOT, "STRAIGHTLINE_RATE_THRESHOLD": "12"}
    run = _cli("config", cwd=os.getcwd(), env=env)
    assert run.returncode == 0, run.stderr
    lines = {line.split()[0]: line for line in run.stdout.splitlines() if line.strip()}
    assert "environment STRAIGHTLINE_RATE_THRESHOLD" in lines["rate_threshold"]
    assert "local, docker, ray" in lines["targets"] and "[tool.straightline]" in lines["targets"]
    assert "python:3.11-slim" in lines["options.docker.base_image"]
    assert lines["size_threshold"].rstrip().endswith("default")
    write(pyproject, "[tool.straightline]\ntargets = ['lokal']\n")
    run = _cli("config", cwd=os.getcwd(), env=env)
    assert run.returncode == 1 and "did you mean 'local'" in run.stderr


def test_a_broken_settings_file_does_not_stop_a_worker_from_importing_the_sdk(places):
    _, pyproject = places
    write(pyproject, "[tool.straightline]\nnonsense = 1\n")
    run = subprocess.run([sys.executable, "-c", "import straightline_sdk.runtime.worker"],
                         env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr


def test_values_named_like_secrets_are_never_shown():
    assert _shown("api_token", "abc123") == "(set, not shown)"
    assert _shown("secret_key", "abc123") == "(set, not shown)"
    assert _shown("base_image", "python:3.11-slim") == "python:3.11-slim"
