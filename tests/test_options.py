"""Typed target options and the registry: names checked, values read one way, tiers."""

from __future__ import annotations

import pytest

import straightline_sdk as straightline
from straightline_sdk import targets
from straightline_sdk.placement import DEFAULT_THRESHOLDS, SERVERLESS, Features, Plan, TargetState
from straightline_sdk.targets import OptionError, parse_options
from straightline_sdk.targets.aws_lambda import LambdaOptions
from straightline_sdk.targets.docker import DockerOptions
from straightline_sdk.targets.ray import RayOptions


def test_a_misspelt_option_is_refused_with_the_closest_name():
    with pytest.raises(OptionError, match=r"unknown docker option 'base_imag'.*did you mean 'base_image'"):
        parse_options("docker", {"base_imag": "python:3.11"})


def test_configure_refuses_a_misspelt_option_and_keeps_the_settings():
    before = straightline.settings()
    with pytest.raises(ValueError, match="did you mean 'start_timeout_s'"):
        straightline.configure(options={"local": {"start_timeout": 5}})
    assert straightline.settings() is before


@pytest.mark.parametrize("text, value", [("1", True), ("true", True), ("Yes", True), ("on", True),
                                         ("0", False), ("false", False), ("NO", False), ("off", False),
                                         (True, True), (0, False)])
def test_every_boolean_option_reads_yes_and_no_the_same_way(text, value):
    assert parse_options("docker", {"direct": text}).direct is value
    assert parse_options("ray", {"start_local": text}).start_local is value
    assert parse_options("lambda", {"create_role": text}).create_role is value


def test_a_value_that_is_not_yes_or_no_is_refused():
    with pytest.raises(OptionError, match="'maybe' is not a yes/no value"):
        parse_options("ray", {"start_local": "maybe"})


def test_numbers_from_strings_and_their_defaults():
    docker = parse_options("docker", {"start_timeout_s": "90", "concurrency": "3"})
    assert (docker.start_timeout_s, docker.concurrency) == (90.0, 3)
    assert DockerOptions().start_timeout_s == 60.0 and RayOptions().start_timeout_s == 120.0
    assert LambdaOptions().concurrency == 10
    with pytest.raises(OptionError, match="not a whole number"):
        parse_options("docker", {"concurrency": "many"})
    with pytest.raises(OptionError, match="must not be negative"):
        parse_options("local", {"start_timeout_s": -1})


def test_environment_options_are_typed_when_read(monkeypatch):
    monkeypatch.setenv("STRAIGHTLINE_RAY_START_LOCAL", "yes")
    monkeypatch.setenv("STRAIGHTLINE_RAY_NUM_CPUS", "2")
    try:
        options = straightline.configure(reset=True).target_options("ray")
        assert options.start_local is True and options.num_cpus == 2.0
    finally:
        monkeypatch.delenv("STRAIGHTLINE_RAY_START_LOCAL")
        monkeypatch.delenv("STRAIGHTLINE_RAY_NUM_CPUS")
        straightline.configure(reset=True)


def test_a_misspelt_environment_option_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("STRAIGHTLINE_LOCAL_CONCURENCY", "2")
    with pytest.raises(ValueError, match=r"STRAIGHTLINE_LOCAL_CONCURENCY\); did you mean 'concurrency'"):
        straightline.configure(reset=True)


def test_a_probe_with_options_that_cannot_be_read_says_why():
    probe = targets.probe("local", {"concurency": 2}, fresh=True)
    assert not probe.available and "did you mean 'concurrency'" in probe.reason


def test_configured_targets_are_checked_against_the_registry():
    with pytest.raises(ValueError, match=r"'dokcer' \(did you mean 'docker'\?\)"):
        straightline.configure(targets=["local", "dokcer"])
    assert set(targets.kinds()) >= {"local", "docker", "lambda", "ray"}


def test_a_second_serverless_kind_is_placed_by_its_tier_without_touching_the_core():
    from straightline_sdk.placement import tiers
    tiers.register_kind("faas", SERVERLESS)
    try:
        states = {"local": TargetState("local", True), "faas": TargetState("faas", True)}
        decision = Plan(Features(), states).decide(DEFAULT_THRESHOLDS.rate * 2, 64, DEFAULT_THRESHOLDS)
        assert decision.target == "faas"
        assert "→ faas (frequent, small)" in decision.reasons[0]
    finally:
        tiers.forget_kind("faas")
