"""scikit-learn's own parallel code, and concurrent.futures code, placed by straightline.

    python examples/sklearn_joblib.py

Runs on the local target (no Docker, no AWS); add "docker" to TARGETS to let batches
spill over to a container when the local worker's slots are busy.
"""

import concurrent.futures as cf

import joblib
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV

import straightline_sdk as straightline

TARGETS = ["local"]

X, y = make_classification(n_samples=1000, n_features=20, random_state=0)
grid = {"n_estimators": [20, 50], "max_depth": [None, 8]}

# 1. joblib: each batch of GridSearchCV's fits is one request of one deployment
straightline.register_joblib()
with joblib.parallel_config("straightline", targets=TARGETS, name="grid-search"):
    search = GridSearchCV(RandomForestClassifier(random_state=0), grid, cv=5, n_jobs=-1).fit(X, y)
print("best:", search.best_params_, f"score {search.best_score_:.3f}")
session = straightline.joblib_deployment("grid-search")
print(session.summary())

# 2. concurrent.futures: any callable, lambdas and closures included
threshold = 0.5
with straightline.Executor(targets=TARGETS) as ex:
    futures = {ex.submit(lambda d: round(sum(d) / len(d), 3), row.tolist()): i
               for i, row in enumerate(X[:5])}
    for future in cf.as_completed(futures):
        print(f"row {futures[future]}: mean {future.result()}")
    print("above threshold:", list(ex.map(lambda v: v > threshold, [0.2, 0.7])))
    print(ex)
# leaving the block waited for the calls and undeployed the executor's deployments
