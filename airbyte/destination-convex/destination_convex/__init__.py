"""Airbyte destination for Convex on airbyte-cdk 7 (``destination-convex``)."""

from destination_convex.destination import DestinationConvex

__all__ = ["DestinationConvex"]
