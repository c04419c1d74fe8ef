"""Engines that run a protection job on a cluster with the local engine's code (see ray_engine)."""
