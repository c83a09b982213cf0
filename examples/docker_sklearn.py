"""A scikit-learn model served from a Docker container (the story of
notebooks/docker.ipynb as a script). Needs a Docker engine.

    python examples/docker_sklearn.py

The SDK captures the packages the function needs (scikit-learn, numpy and their
dependencies) at the versions installed here, builds an image offline with their
wheels, and starts a container; the fitted model travels inside the pickled
function. A second run with the same code reuses the image.
"""

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import straightline_sdk as straightline

X, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=1000).fit(X, y)


@straightline.deploy(target="docker", sample=(X[:5],))
def predict(rows):
    return model.predict(rows)


def main():
    remote = predict(X[:10])
    assert (remote == model.predict(X[:10])).all()
    print("first ten predictions:", remote)

    batches = [X[i:i + 10] for i in range(0, len(X), 10)]
    results = predict.map(batches)
    print(f"{len(results)} batches, accuracy {np.mean(np.concatenate(results) == y):.3f}")
    print(predict.placement)
    print(predict.summary())
    predict.undeploy()


if __name__ == "__main__":
    main()
