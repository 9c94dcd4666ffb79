"""Verification of quantized networks: exact integer semantics, bound propagation, attacks and an exact MILP."""
