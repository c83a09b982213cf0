"""The joblib backend: scikit-learn's own parallel code, placed by straightline.

Real workers (the local target; one test on Docker), real scikit-learn: results
must be those of n_jobs=1, exactly, and the work must show on the deployment.
"""

from __future__ import annotations

import os
import warnings

import joblib
import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

import straightline_sdk as straightline
from straightline_sdk.joblib_backend import StraightLineBackend
from tests.test_docker import engine  # noqa: F401  (the fixture: a real engine, the base image)


@pytest.fixture(autouse=True)
def registered():
    straightline.register_joblib()


@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=300, n_features=8, n_informative=4, random_state=0)


GRID = {"n_estimators": [5, 10], "max_depth": [2, None]}


def forest_search(n_jobs, **kw):
    return GridSearchCV(RandomForestClassifier(random_state=0), GRID, cv=3, n_jobs=n_jobs, **kw)


def same_search(a, b):
    assert a.best_params_ == b.best_params_
    assert a.best_score_ == b.best_score_
    for key in ("mean_test_score", "std_test_score", "params"):
        assert list(a.cv_results_[key]) == list(b.cv_results_[key])
    for i in range(3):
        assert list(a.cv_results_[f"split{i}_test_score"]) == list(b.cv_results_[f"split{i}_test_score"])


class Boom(RuntimeError):
    pass


class FailsOnDepthTwo(ClassifierMixin, BaseEstimator):
    """Fails to fit for one value of its parameter, as a broken estimator does."""

    def __init__(self, depth=1):
        self.depth = depth

    def fit(self, X, y):
        if self.depth == 2:
            raise Boom(f"cannot fit with depth={self.depth}")
        self.classes_ = np.unique(y)
        self.majority_ = np.bincount(y).argmax()
        return self

    def predict(self, X):
        return np.full(len(X), self.majority_)


# -- scikit-learn ---------------------------------------------------------------------

def test_grid_search_gives_the_results_of_n_jobs_1_and_leaves_call_records(data):
    X, y = data
    reference = forest_search(n_jobs=1).fit(X, y)
    with joblib.parallel_config("straightline", targets=["local"], name="grid"):
        search = forest_search(n_jobs=-1).fit(X, y)
    same_search(search, reference)
    dep = straightline.joblib_deployment("grid")
    assert dep is not None and dep.allowed == ("local",)
    # what the batches unpickle is installed where environments are built
    assert {"scikit-learn", "numpy", "joblib"} <= set(dep.spec.requirements)
    records = [r for r in dep.calls if r.outcome == "ok"]
    # 4 candidates x 3 folds = 12 fits, auto-batched into requests of one batch each
    assert 1 <= len(records) <= 12
    assert {r.target for r in records} == {"local"}
    assert dep.stats()["local"]["calls"] == len(records)


def test_cross_val_score_gives_the_scores_of_n_jobs_1(data):
    X, y = data
    model = LogisticRegression(max_iter=200)
    reference = cross_val_score(model, X, y, cv=5, n_jobs=1)
    with joblib.parallel_backend("straightline", targets=["local"]):   # the older spelling
        scores = cross_val_score(model, X, y, cv=5, n_jobs=-1)
    assert list(scores) == list(reference)
    assert straightline.joblib_deployment().stats()["local"]["calls"] >= 1


def test_a_failing_estimator_raises_its_own_type_with_error_score_raise(data):
    X, y = data
    search = GridSearchCV(FailsOnDepthTwo(), {"depth": [1, 2, 3]}, cv=3, n_jobs=-1,
                          error_score="raise")
    with joblib.parallel_config("straightline", targets=["local"]):
        with pytest.raises(Boom, match="cannot fit with depth=2") as info:
            search.fit(X, y)
    assert "Traceback on the local target" in str(info.value.__cause__)


def test_error_score_nan_behaves_as_with_n_jobs_1(data):
    X, y = data

    def search(n_jobs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s = GridSearchCV(FailsOnDepthTwo(), {"depth": [1, 2, 3]}, cv=3, n_jobs=n_jobs,
                             error_score=np.nan).fit(X, y)
        return s, [w for w in caught if issubclass(w.category, FitFailedWarning)]

    reference, reference_warnings = search(1)
    with joblib.parallel_config("straightline", targets=["local"]):
        result, result_warnings = search(-1)
    np.testing.assert_array_equal(result.cv_results_["mean_test_score"],
                                  reference.cv_results_["mean_test_score"])
    assert result.best_params_ == reference.best_params_ == {"depth": 1}
    assert len(result_warnings) == len(reference_warnings) == 1
    assert "Boom: cannot fit with depth=2" in str(result_warnings[0].message)


# -- joblib itself -------------------------------------------------------------------------

def square(x):
    return x * x


def fail_on_three(x):
    if x == 3:
        raise KeyError(f"no {x}")
    return x


def nested_sum(n):
    """A task that uses joblib itself, as an estimator with n_jobs does."""
    from joblib import Parallel, delayed
    from joblib.parallel import get_active_backend
    backend, _ = get_active_backend()
    parts = Parallel(n_jobs=-1)(delayed(square)(i) for i in range(n))
    return type(backend).__name__, sum(parts), os.getpid()


def test_n_jobs_minus_one_is_the_allowed_targets_warm_capacity():
    straightline.configure(options={"local": {"concurrency": 3}})
    with joblib.parallel_config("straightline", targets=["local"]):
        assert joblib.effective_n_jobs(-1) == 3
        assert joblib.effective_n_jobs(-2) == 2
        assert joblib.effective_n_jobs(5) == 5
    dep = straightline.joblib_deployment()
    assert dep.deployed_targets["local"].concurrency == 3


def test_n_jobs_1_runs_here_and_deploys_nothing():
    with joblib.parallel_config("straightline", targets=["local"], name="sequential"):
        assert joblib.Parallel(n_jobs=1)(joblib.delayed(os.getpid)() for _ in range(3)) == [os.getpid()] * 3
    assert straightline.joblib_deployment("sequential") is None


def test_plain_parallel_keeps_order_and_auto_batching_and_explicit_batches():
    with joblib.parallel_config("straightline", targets=["local"], name="plain"):
        assert joblib.Parallel(n_jobs=-1)(joblib.delayed(square)(i) for i in range(500)) == \
            [i * i for i in range(500)]
        dep = straightline.joblib_deployment("plain")
        before = len(dep.calls)
        out = joblib.Parallel(n_jobs=2, batch_size=25)(joblib.delayed(square)(i) for i in range(100))
    assert out == [i * i for i in range(100)]
    # one request per batch, and joblib's batches hold several tasks (it splits the
    # last ones finer, so not exactly 100 / 25)
    assert len(dep.calls) - before < 100
    assert all(r.target == "local" for r in dep.calls)


def test_return_as_generator_streams_results():
    with joblib.parallel_config("straightline", targets=["local"]):
        gen = joblib.Parallel(n_jobs=2, return_as="generator")(joblib.delayed(square)(i) for i in range(10))
        assert list(gen) == [i * i for i in range(10)]


def test_an_exception_in_a_task_reaches_the_caller_with_its_type():
    with joblib.parallel_config("straightline", targets=["local"]):
        with pytest.raises(KeyError, match="no 3"):
            joblib.Parallel(n_jobs=2)(joblib.delayed(fail_on_three)(i) for i in range(6))
        # the session is still usable after the error
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]


def test_nested_joblib_calls_run_over_there_on_joblibs_threads_not_back_through_straightline():
    with joblib.parallel_config("straightline", targets=["local"], name="nested"):
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(nested_sum)(n) for n in (3, 4, 5))
    assert [total for _, total, _ in out] == [5, 14, 30]
    assert {name for name, _, _ in out} == {"ThreadingBackend"}
    assert {pid for _, _, pid in out} == {straightline.joblib_deployment("nested").deployed_targets["local"].pid}


def test_a_random_forest_with_n_jobs_inside_a_grid_search(data):
    X, y = data
    reference = GridSearchCV(RandomForestClassifier(n_estimators=6, n_jobs=2, random_state=1),
                             {"max_depth": [2, 3]}, cv=2, n_jobs=1).fit(X, y)
    with joblib.parallel_config("straightline", targets=["local"]):
        search = GridSearchCV(RandomForestClassifier(n_estimators=6, n_jobs=2, random_state=1),
                              {"max_depth": [2, 3]}, cv=2, n_jobs=-1).fit(X, y)
    assert search.best_params_ == reference.best_params_
    assert list(search.cv_results_["mean_test_score"]) == list(reference.cv_results_["mean_test_score"])


def test_a_forest_fitted_here_with_n_jobs_builds_its_trees_over_there(data):
    X, y = data
    reference = RandomForestClassifier(n_estimators=8, n_jobs=1, random_state=2).fit(X, y)
    with joblib.parallel_config("straightline", targets=["local"], name="forest"):
        forest = RandomForestClassifier(n_estimators=8, n_jobs=-1, random_state=2).fit(X, y)
        # predict_proba asks joblib for shared memory: joblib's threads, here
        proba = forest.predict_proba(X)
    np.testing.assert_array_equal(proba, reference.predict_proba(X))
    assert straightline.joblib_deployment("forest").stats()["local"]["calls"] >= 1


def nap(seconds):
    import time
    time.sleep(seconds)
    return seconds


def test_parallel_timeout_raises_joblibs_timeout_error():
    import multiprocessing
    with joblib.parallel_config("straightline", targets=["local"]):
        with pytest.raises(multiprocessing.TimeoutError):   # what joblib raises under loky too
            joblib.Parallel(n_jobs=2, timeout=0.3)(joblib.delayed(nap)(s) for s in (0.0, 5.0, 5.0))


def test_lambdas_defined_here_travel_by_value():
    offset = 7
    with joblib.parallel_config("straightline", targets=["local"]):
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(lambda v: v + offset)(i) for i in range(5))
    assert out == [7, 8, 9, 10, 11]


def test_bad_options_are_refused_with_what_is_accepted():
    with pytest.raises(TypeError, match="takes no option.*'target'.*it takes"):
        with joblib.parallel_config("straightline", target="local"):
            pass
    with pytest.raises(ValueError, match="unknown target"):
        with joblib.parallel_config("straightline", targets=["lokal"]):
            pass
    with pytest.raises(TypeError, match="straightline.Resources"):
        with joblib.parallel_config("straightline", resources={"memory_mb": 512}):
            pass


def test_the_backend_never_travels_inside_a_batch():
    backend = StraightLineBackend(nesting_level=0)
    nested, n_jobs = backend.get_nested_backend()
    assert type(nested).__name__ == "ThreadingBackend" and n_jobs is None
    with pytest.raises(TypeError, match="stays in this process"):
        import pickle
        pickle.dumps(backend)


@pytest.mark.docker
def test_grid_search_on_docker_gives_the_results_of_n_jobs_1(engine, data):
    X, y = data
    reference = forest_search(n_jobs=1).fit(X, y)
    with joblib.parallel_config("straightline", targets=["docker"], name="grid-docker"):
        search = forest_search(n_jobs=-1).fit(X, y)
    same_search(search, reference)
    dep = straightline.joblib_deployment("grid-docker")
    assert {r.target for r in dep.calls} == {"docker"}
    assert dep.stats()["docker"]["errors"] == 0


def test_the_example_script_runs_on_the_local_target(tmp_path):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRAIGHTLINE_")}
    env["STRAIGHTLINE_CACHE_DIR"] = str(tmp_path)
    run = subprocess.run([sys.executable, os.path.join(root, "examples", "sklearn_joblib.py")],
                         capture_output=True, text=True, timeout=300, cwd=root, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "best: {" in run.stdout and "<Deployment 'grid-search' on local" in run.stdout
    assert "above threshold: [False, True]" in run.stdout
