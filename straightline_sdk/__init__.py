"""straightline-sdk: deploy a Python function where it runs best.

    import straightline_sdk as straightline

    @straightline.deploy(sample=(x,))
    def predict(x): ...

    predict(x)                 # runs on the target the StraightLine policy chose
    predict.map(xs)            # many calls, concurrently, results in order
    predict.submit(x)          # a concurrent.futures.Future
    await predict.aio(x)       # awaited (a notebook's loop, asyncio.run)
    print(predict.placement)   # where, and why

    with straightline.Executor(targets=["local"]) as ex:    # concurrent.futures, placed
        ex.submit(fn, x).result()
    straightline.register_joblib()   # joblib.parallel_config("straightline", targets=[...])
"""

from .api import VariantDeployedWarning, deploy
from .calibration import Calibration, calibrate
from .cancel import CallCancelled
from .config import configure, settings
from .errors import (CallTimeout, PackagingError, PayloadTooLarge, PlacementError, RemoteError,
                     StraightLineError, TargetFailure, TargetUnavailable)
from .environment import SecretMissing
from .executor import Executor
from .handle import Deployment, Sample, deployments
from .packaging.payload import LargeCaptureWarning
from .resources import Resources
from .whatif import whatif

__version__ = "0.1.0"

# imported when first used: joblib takes ~0.15 s to import, and most sessions never need it
_LAZY = {"register_joblib": ".joblib_backend", "joblib_deployment": ".joblib_backend"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "deploy", "calibrate", "whatif", "Calibration", "configure", "settings", "deployments", "Deployment", "Sample", "Resources",
    "StraightLineError", "PackagingError", "PlacementError", "PayloadTooLarge",
    "TargetUnavailable", "TargetFailure", "RemoteError", "CallTimeout",
    "CallCancelled", "SecretMissing", "LargeCaptureWarning", "VariantDeployedWarning",
    "Executor", "register_joblib", "joblib_deployment",
]
