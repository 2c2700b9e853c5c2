"""Ring-1 services built on the kernel's syscalls and drivers.

The tool registry (`ToolRegistry`, `install_registry`): tool manifests, discovery filtered
to what the caller may call, and execution in the tier a tool's risk requires.
"""
from __future__ import annotations

from .manifest import Effect, ManifestError, Origin, Risk, Tier, ToolManifest, parse_manifest
from .registry import HostTool, ToolRegistry
from .registry import install as install_registry

__all__ = ["Effect", "HostTool", "ManifestError", "Origin", "Risk", "Tier", "ToolManifest", "ToolRegistry",
           "install_registry", "parse_manifest"]
