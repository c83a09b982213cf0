"""``@straightline.deploy``: decorate a function, get a Deployment back."""

from __future__ import annotations

import dataclasses
import functools
import warnings

from .calibration import calibrate as run_calibration
from .handle import Deployment, Sample, live, register
from .environment import applied, check_env, resolve_secrets
from .packaging import content_hash, package_function
from .packaging.identity import default_name, distinct_name
from .resources import Resources
from .targets import deploy_options as validate_options


class VariantDeployedWarning(UserWarning):
    """A function deployed beside a live one with the same code and other data."""


def deploy(fn=None, *, sample=None, rate: float | None = None, target: str | None = None,
           targets=None, requirements=None, resources: Resources | None = None,
           name: str | None = None, keep: bool = False, idempotent: bool = True,
           prewarm: bool = False, calibrate: bool = False, capture_output: bool = True,
           options: dict | None = None, env: dict | None = None, secrets=None):
    """Deploy ``fn`` where the StraightLine policy places it; returns its handle.

    sample       arguments of one representative call, ``(x,)`` or ``Sample(x, k=1)``:
                 run here once to profile the function. Without it, the first
                 call is the profile.
    rate         expected requests per second (the paper's f), until measured.
    target       pin one target ("local", "docker", "lambda", "ray"): no placement.
    targets      the targets allowed (default: configure(targets=...), i.e. local, docker).
    requirements extra pip requirements for images and bundles ("pkg==1.2").
    resources    Resources(memory_mb=, cpus=, gpus=, timeout_s=).
    name         defaults to the function's qualified name (a partial: the wrapped
                 function's, with "-partial"); the same in every process.
    keep         leave Docker/Lambda/Ray deployments running after this process exits.
    idempotent   may a call be re-run on another target when its target failed
                 mid-call? (default True; False gives at-most-once delivery)
    prewarm      deploy every allowed target now instead of when first chosen.
    calibrate    measure the targets now and set F and D from the measurements.
    options      target options for this deployment only, per kind, over configure()'s:
                 ``{"docker": {"base_image": "python:3.11"}, "local": {"concurrency": 2}}``
                 (flat, ``{"base_image": ...}``, when ``target=`` pins one kind). An
                 unknown name is an error that suggests the closest valid one.
    capture_output  bring what a call prints (stdout, stderr, warnings, log records
                 at this process's root logger level) back and print it in the
                 calling cell, tagged with where it ran (default True).
    env          {"NAME": "value"}: plain settings put in the target's environment.
    secrets      ["API_KEY", ...]: read from this process's environment, else a .env
                 file, now; handed to the target at start, never serialized, stored
                 or shown. A changed value restarts the target, rebuilding nothing.

    A generator function's calls return an iterator of its items. ``async def``
    functions are awaited on the far side (use ``await h.aio(x)`` here).

    Deploying again under the same name with the same content and options
    (re-running a notebook cell) returns the live deployment unchanged; content
    is the code's meaning, so a comment or blank line added redeploys nothing.
    """
    if fn is None:
        return functools.partial(deploy, sample=sample, rate=rate, target=target, targets=targets,
                                 requirements=requirements, resources=resources, name=name,
                                 keep=keep, idempotent=idempotent, prewarm=prewarm,
                                 calibrate=calibrate, capture_output=capture_output,
                                 options=options, env=env, secrets=secrets)
    if not callable(fn):
        raise TypeError(f"deploy() takes a function, not a {type(fn).__qualname__}")
    options = validate_options(options, target)
    named = name is not None
    name = name or default_name(fn)
    env_pairs = check_env(env)
    secret_values = resolve_secrets(secrets)
    both = sorted(set(dict(env_pairs)) & set(secret_values))
    if both:
        raise ValueError(f"{', '.join(both)} given both in env and in secrets: name each once")
    resources = resources or Resources()
    sample = Sample.of(sample) if sample is not None else None
    package = package_function(fn, name)
    if not named:
        earlier = live(name)
        distinct = distinct_name(name, fn, package.meaning_hash,
                                 *((earlier.fn, earlier.spec.package.meaning_hash)
                                   if earlier is not None else ()))
        if distinct != name:
            if earlier is not None and live(distinct) is None:
                warnings.warn(
                    f"{name!r} is deployed already with other data (arguments, closure values "
                    f"or instance state); this one is deployed beside it as {distinct!r}. To "
                    f"replace it instead, undeploy it first or pass name={name!r}",
                    VariantDeployedWarning, stacklevel=2)
            name, package = distinct, dataclasses.replace(package, name=distinct)
    if sample is not None:
        # the far side must also unpickle the arguments (a numpy array for a
        # function that never imports numpy): their modules are dependencies too
        arg_modules = {type(v).__module__.partition(".")[0]
                       for v in (*sample.args, *sample.kwargs.values())} - {"builtins"}
        package = dataclasses.replace(package, module_names=package.module_names | arg_modules)
    # everything but the code: when only the code changed, the running targets take
    # the edited function in place (no restart, no image build)
    setting = content_hash(repr(resources), repr(sorted(requirements or ())), repr(target),
                           repr(tuple(targets) if targets else None), repr(keep),
                           repr(idempotent), repr(capture_output), repr(sorted(
                               (kind, sorted(opts.items(), key=repr)) for kind, opts in options.items())),
                           repr(env_pairs), secret_values.fingerprint(),
                           repr(package.is_generator))
    key = content_hash(package.meaning_hash, setting)
    existing = live(name)
    if existing is not None:
        healthy = all(t.health()[0] for t in existing.deployed_targets.values())
        if existing.deploy_key == key and healthy:
            # the same cell run again, or its lines moved: nothing to build, nothing to start
            existing.adopt_edit(fn)
            return existing
        if healthy and existing.setting_key == setting:
            profile = None
            if sample is not None:   # before the swap: a sample that fails changes nothing
                from .profile import profile_call
                with applied(env_pairs, secret_values):
                    profile = profile_call(fn, sample.args, sample.kwargs)[0]
            if existing.swap_function(fn, package, key):
                if profile is not None:
                    existing.set_profile(profile)
                return existing
        existing.undeploy()
    dep = Deployment(fn, package, rate=rate, target=target, targets=targets,
                     requirements=requirements, resources=resources, keep=keep,
                     idempotent=idempotent, deploy_key=key, capture_output=capture_output,
                     options=options, env=env_pairs, secrets=secret_values)
    dep.setting_key = setting
    functools.update_wrapper(dep, fn, updated=())
    register(dep)
    try:
        if sample is not None:
            from .profile import profile_call
            with applied(env_pairs, secret_values):   # the sample sees what the target will
                profile, _ = profile_call(fn, sample.args, sample.kwargs)
            dep.set_profile(profile)
        if sample is not None or target is not None:
            dep.deploy_initial()
        if prewarm:
            dep.prewarm()
        if calibrate:
            run_calibration(dep)
    except BaseException as exc:
        dep.undeploy()
        from .handle import redact_error
        raise redact_error(exc, secret_values)
    return dep
