"""What if: simulate a deployment's own traffic on every tier before deploying there.

    import straightline_sdk as straightline
    from straightline_sdk import whatif as wi

    result = straightline.whatif(h, h.calls)                       # this machine, every policy
    result = straightline.whatif(h, "trace.csv", preset="cloud")
    result = straightline.whatif(h, wi.poisson(rate=50, duration_s=600), preset="cloud",
                                 tiers={"lambda": {"memory_mb": 1024}})
    print(result)               # the table; in a notebook it shows as a chart and a table
    result.rerun(preset="this-machine")

A discrete-event simulation (SimPy) in which the real placement policy
(``Plan.decide``) places every request against the simulated targets' state.
Models and their sources: models.py, presets.py, docs/whatif.md.
"""

from __future__ import annotations

import time

from . import presets
from .engine import Policy, RunResult, oracle, random_policy, simulate, static, straightline
from .models import (ClientModel, DockerModel, FunctionModel, LambdaModel, LocalModel, RayModel)
from .placement_adapter import DEFAULT_THRESHOLDS, model_thresholds, tier_name
from .presets import PRESETS, Setup, cloud, this_machine
from .report import WhatIf
from .traffic import Traffic, bursts, daily, from_calls, from_csv, poisson
from .tune import Tuned, tune

__all__ = ["whatif", "tune_thresholds", "WhatIf", "Traffic", "poisson", "bursts", "daily",
           "from_csv", "from_calls", "Setup", "PRESETS", "this_machine", "cloud", "FunctionModel",
           "ClientModel", "LocalModel", "DockerModel", "LambdaModel", "RayModel", "Policy",
           "RunResult", "simulate", "tune", "Tuned", "POLICIES"]

#: the policies whatif() simulates unless told otherwise ("all-<tier>" for every tier)
POLICIES = ("straightline", "straightline-calibrated", "straightline-tuned", "all", "random", "oracle")


def function_of(h, function=None) -> FunctionModel:
    """The function as simulated: the deployment's profile, with any overrides."""
    if isinstance(function, FunctionModel):
        return function
    base = FunctionModel(sources={"runtime_s": "default: no profile"})
    profile = getattr(h, "profile", None)
    if profile is not None:
        base = FunctionModel(
            runtime_s=profile.runtime_s, reference_bytes=profile.request_bytes,
            result_bytes=profile.result_bytes,
            sources={"runtime_s": "the deployment's profile (one call, here)",
                     "reference_bytes": "the profile's request size",
                     "result_bytes": "the profile's result size",
                     "runtime_per_mb_s": "assumed: the runtime does not grow with the request "
                                         "(override runtime_per_mb_s if it does)",
                     "jitter": "assumed: every call takes its size's runtime"})
    elif h is not None:
        raise ValueError(f"{getattr(h, 'name', h)!r} has no profile yet: call it once, or deploy it "
                         f"with sample=(...), or pass function=whatif.FunctionModel(runtime_s=...)")
    if isinstance(function, dict):
        base = base.override(**function)
    elif function is not None:
        raise TypeError("function must be a whatif.FunctionModel or a dict of its parameters")
    return base


def setup_of(preset, tiers, client, h=None) -> Setup:
    """The preset, cut to ``tiers`` (names) or changed by ``tiers`` ({name: {param: value}})."""
    setup = presets.get(preset, h)
    if tiers is not None:
        if isinstance(tiers, str):
            tiers = [tiers]
        if isinstance(tiers, dict):
            names = [tier_name(t) for t in tiers]
            setup = setup.only(names)
            for name, changes in zip(names, tiers.values()):
                if changes:
                    setup = setup.override(name, **changes)
        else:
            setup = setup.only([tier_name(t) for t in tiers])
    if client is not None:
        if isinstance(client, ClientModel):
            from dataclasses import replace
            setup = replace(setup, client=client)
        else:
            setup = setup.override("client", **client)
    if not setup.tiers:
        raise ValueError("no tiers to simulate")
    return setup


def _policies(names, setup, function, h, tuned_fn) -> list:
    from ..config import settings
    out = []
    for name in names:
        if isinstance(name, Policy):
            out.append(name)
        elif name == "straightline":
            th = settings().thresholds
            out.append(straightline(th, "straightline", "the configured thresholds"
                                    if th is not DEFAULT_THRESHOLDS else "the default thresholds"))
        elif name == "straightline-calibrated":
            cal = getattr(h, "calibration", None)
            if cal is not None and setup.name == "this-machine":
                out.append(straightline(cal.thresholds, name, "the deployment's calibrate() thresholds"))
            else:
                out.append(straightline(model_thresholds(setup.tiers, function), name,
                                        "what calibrate() would measure on these tiers"))
        elif name == "straightline-tuned":
            out.append(straightline(tuned_fn().thresholds, name, "F and D searched on this traffic"))
        elif name == "all":
            out += [static(t) for t in setup.tiers]
        elif name.startswith("all-"):
            out.append(static(name[4:]))
        elif name == "random":
            out.append(random_policy())
        elif name in ("oracle", "oracle (lower bound)"):
            out.append(oracle())
        else:
            raise ValueError(f"unknown policy {name!r}: use {', '.join(POLICIES)}, all-<tier>, "
                             f"or a whatif.Policy")
    return out


def whatif(h=None, traffic=None, *, policies=POLICIES, tiers=None, preset="this-machine",
           function=None, client=None, seed: int = 0, prewarm: bool = True,
           objective: str = "latency", rate_window_s: float | None = None) -> WhatIf:
    """Predict, for ``h``'s own function, each placement policy's response times,
    failures, tiers used and cost on ``traffic``.

    h         a Deployment (its profile gives the function's runtime), or None with function=
    traffic   h.calls, a trace file path, (seconds, bytes) pairs, or a pattern:
              whatif.poisson(rate, duration_s, size), whatif.bursts(...), whatif.daily(...)
              (default: h.calls)
    policies  names among POLICIES ("all" = all-<tier> for every tier), or Policy objects
    tiers     which tiers (["local", "lambda"]), or overrides ({"lambda": {"memory_mb": 1024}})
    preset    "this-machine" (measured here, Lambda = moto) or "cloud", or a Setup
    function  overrides of the function model ({"runtime_per_mb_s": 0.01}) or a FunctionModel
    client    the caller's limits ({"max_in_flight": 32, "timeout_s": 15})
    objective what the tuned policy optimises: "latency" or "cost"
    """
    from . import traffic as traffic_mod
    t0 = time.perf_counter()
    inputs = dict(h=h, traffic=traffic, policies=policies, tiers=tiers, preset=preset,
                  function=function, client=client, seed=seed, prewarm=prewarm,
                  objective=objective, rate_window_s=rate_window_s)
    if traffic is None:
        if h is None:
            raise ValueError("whatif() needs traffic: h.calls, a trace file, or a pattern such as "
                             "whatif.poisson(rate=10, duration_s=60)")
        traffic = h.calls
    tr = traffic_mod.of(traffic)
    if not len(tr):
        raise ValueError("the traffic has no requests")
    fn = function_of(h, function)
    setup = setup_of(preset, tiers, client, h)
    setup = _with_resources(setup, h, tiers)
    features = h.features() if h is not None and hasattr(h, "features") else None
    if features is not None:
        from dataclasses import replace
        features = replace(features, rate=0.0)
    from ..config import settings
    window = rate_window_s or settings().rate_window_s
    prior = float(getattr(h, "declared_rate", 0.0) or 0.0)
    from .tune import observed_rates
    rates = observed_rates(tr, window, prior)   # f_t of each request: shared by every run
    common = dict(seed=seed, features=features, rate_window_s=window, prior_rate=prior, prewarm=prewarm,
                  rates=rates)
    tuned_box: list = []

    def tuned_fn():
        if not tuned_box:
            start = model_thresholds(setup.tiers, fn)
            tuned_box.append(tune(tr, setup, fn, objective=objective, start=start, **common))
        return tuned_box[0]

    if isinstance(policies, str):
        policies = [policies]
    chosen = _policies(list(policies), setup, fn, h, tuned_fn)
    results = []
    for policy in chosen:
        # a StraightLine setting the tuning search already simulated is not simulated again
        known = tuned_box[0].result_for(policy.thresholds) \
            if tuned_box and policy.kind == "straightline" and policy.thresholds is not None else None
        if known is not None:
            results.append(_relabel(known, policy))
        else:
            results.append(simulate(tr, setup, fn, policy, **common))
    result = WhatIf(results, tr, setup, fn, inputs, tuned_box[0] if tuned_box else None,
                    time.perf_counter() - t0)
    panel = getattr(h, "_panel", None)
    if panel is not None:    # the deployment's panel is open: show the prediction there too
        panel.show_whatif(result)
    return result


def _with_resources(setup: Setup, h, tiers) -> Setup:
    """Lambda's memory (and so its CPU share and price) as the deployment asks for it,
    unless the what-if sets it itself."""
    memory = getattr(getattr(getattr(h, "spec", None), "resources", None), "memory_mb", None)
    asked = isinstance(tiers, dict) and any(tier_name(t) == "lambda" and "memory_mb" in (v or {})
                                            for t, v in tiers.items())
    if memory and "lambda" in setup.tiers and not asked:
        from dataclasses import replace
        model = setup.tiers["lambda"]
        model = replace(model, memory_mb=memory,
                        sources={**model.sources, "memory_mb": "the deployment's Resources(memory_mb=)"})
        setup = replace(setup, tiers={**setup.tiers, "lambda": model})
    return setup


def _relabel(result: RunResult, policy: Policy) -> RunResult:
    from dataclasses import replace
    return replace(result, policy=policy)


def tune_thresholds(h=None, traffic=None, *, objective: str = "latency", preset="this-machine",
                    tiers=None, function=None, client=None, seed: int = 0) -> Tuned:
    """F and D for ``h`` chosen by searching the simulator on ``traffic``."""
    from . import traffic as traffic_mod
    from ..config import settings
    tr = traffic_mod.of(traffic if traffic is not None else h.calls)
    fn = function_of(h, function)
    setup = _with_resources(setup_of(preset, tiers, client, h), h, tiers)
    features = h.features() if h is not None and hasattr(h, "features") else None
    if features is not None:
        from dataclasses import replace
        features = replace(features, rate=0.0)
    return tune(tr, setup, fn, objective=objective, seed=seed, features=features,
                rate_window_s=settings().rate_window_s,
                prior_rate=float(getattr(h, "declared_rate", 0.0) or 0.0),
                start=model_thresholds(setup.tiers, fn))


# ``straightline.whatif`` is this function; the patterns and models ride on it, so a
# notebook needs no second import: ``straightline.whatif.poisson(rate=50)``.
for _name in ("poisson", "bursts", "daily", "from_csv", "from_calls", "Traffic", "Setup",
              "this_machine", "cloud", "FunctionModel", "ClientModel", "LocalModel", "DockerModel",
              "LambdaModel", "RayModel", "POLICIES", "PRESETS", "tune_thresholds"):
    setattr(whatif, _name, globals()[_name])
del _name
