"""straightline-sdk: deploy a Python function where it runs best.

    import straightline_sdk as straightline

    @straightline.deploy(sample=(x,))
    def predict(x): ...

    predict(x)                 # runs on the target the StraightLine policy chose
    predict.map(xs)            # many calls, concurrently, results in order
    predict.submit(x)          # a concurrent.futures.Future
    await predict.aio(x)       # awaited (a notebook's loop, asyncio.run)
    print(predict.placement)   # where, and why
"""

from .api import deploy
from .calibration import Calibration, calibrate
from .cancel import CallCancelled
from .config import configure, settings
from .errors import (CallTimeout, PackagingError, PayloadTooLarge, PlacementError, RemoteError,
                     StraightLineError, TargetFailure, TargetUnavailable)
from .environment import SecretMissing
from .handle import Deployment, Sample, deployments
from .packaging.payload import LargeCaptureWarning
from .resources import Resources

__version__ = "0.1.0"

__all__ = [
    "deploy", "calibrate", "Calibration", "configure", "settings", "deployments", "Deployment", "Sample", "Resources",
    "StraightLineError", "PackagingError", "PlacementError", "PayloadTooLarge",
    "TargetUnavailable", "TargetFailure", "RemoteError", "CallTimeout",
    "CallCancelled", "SecretMissing", "LargeCaptureWarning",
]
