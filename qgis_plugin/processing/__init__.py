"""The mapseg Processing provider and its algorithms (one module each)."""
