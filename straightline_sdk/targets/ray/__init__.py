"""The Ray target kind (tier: cluster).

- target.py   RayTarget: connecting, the warm actor, map chunks as tasks, inventory
- options.py  RayOptions: the options it takes, typed, with their defaults

The far side is runtime/ray_entry.py (the runtime ships on its own, see runtime/).
"""

from .options import Options, RayOptions
from .target import NAMESPACE, RayTarget, connect

__all__ = ["NAMESPACE", "Options", "RayOptions", "RayTarget", "connect"]
