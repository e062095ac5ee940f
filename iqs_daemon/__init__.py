"""iqs-daemon: scores photos for technical quality and writes the verdict into their XMP."""

from __future__ import annotations

__version__ = "0.1.0"
