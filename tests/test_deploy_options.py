"""Per-deployment target options: deploy(..., options={kind: {...}}), checked by the
kinds' typed Options (as configure()'s are) before anything is built or started."""

from __future__ import annotations

import pytest

import straightline_sdk as straightline
from straightline_sdk.targets import OptionError


def echo(x):
    return x


def test_an_unknown_option_name_suggests_the_closest_one():
    with pytest.raises(OptionError, match=r"unknown docker option 'base_imag' \(from deploy\(options=\)\); did you mean 'base_image'\?"):
        straightline.deploy(echo, target="docker", options={"docker": {"base_imag": "python:3.11"}})
    assert straightline.deployments() == []   # nothing was deployed


def test_an_unknown_target_kind_suggests_the_closest_one():
    with pytest.raises(OptionError, match=r"unknown target 'dokcer' in options; did you mean 'docker'\?"):
        straightline.deploy(echo, options={"dokcer": {"base_image": "python:3.11"}})


def test_flat_options_need_a_pinned_target():
    with pytest.raises(OptionError, match="say which target"):
        straightline.deploy(echo, options={"concurrency": 2})


def test_per_deployment_options_reach_the_target_and_override_configure():
    straightline.configure(options={"local": {"concurrency": 5}})
    h = straightline.deploy(echo, target="local", options={"local": {"concurrency": 3}})
    assert h(1) == 1 and h.deployed_targets["local"].concurrency == 3
    flat = straightline.deploy(echo, target="local", name="flat", options={"concurrency": 2})
    assert flat(2) == 2 and flat.deployed_targets["local"].concurrency == 2
    other = straightline.deploy(echo, target="local", name="other")
    assert other(3) == 3 and other.deployed_targets["local"].concurrency == 5


def test_changed_options_redeploy_a_rerun_cell():
    first = straightline.deploy(echo, target="local", options={"concurrency": 2})
    same = straightline.deploy(echo, target="local", options={"concurrency": 2})
    changed = straightline.deploy(echo, target="local", options={"concurrency": 3})
    assert same is first and changed is not first


def test_values_are_read_by_the_kinds_typed_options_as_configures_are():
    """One validator: deploy(options=) goes through the same typed Options as configure()."""
    with pytest.raises(OptionError, match=r"local option 'concurrency' \(from deploy\(options=\)\): 'many' is not a whole number"):
        straightline.deploy(echo, target="local", options={"concurrency": "many"})
    with pytest.raises(OptionError, match="'maybe' is not a yes/no value"):
        straightline.deploy(echo, options={"docker": {"direct": "maybe"}})
    h = straightline.deploy(echo, target="local", options={"local": {"concurrency": "3"}})
    assert h.options == {"local": {"concurrency": 3}}       # read as a number, as from a file
    assert h(4) == 4 and h.deployed_targets["local"].concurrency == 3
