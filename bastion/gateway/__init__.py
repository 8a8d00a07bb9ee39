"""The relay: upstream pool, catalogue, router, era bridge, notification fan-in."""
