"""Model specs and the small built-in models used by demos and tests."""
