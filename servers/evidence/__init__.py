"""Evidence bundles: what the acceptance packs found, plots, screenshots, signed to verify offline.

Public surface: `collect` and `render` (building), `verify_bundle` and
`BundleInvalid` (checking), `BundleSigner`, `Inputs`.
"""

from servers.evidence.build import Inputs, RenderFailed, collect, render
from servers.evidence.manifest import BundleInvalid, BundleSigner, Verified, verify_bundle

__all__ = [
    "BundleInvalid",
    "BundleSigner",
    "Inputs",
    "RenderFailed",
    "Verified",
    "collect",
    "render",
    "verify_bundle",
]
