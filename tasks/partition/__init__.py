"""Pipeline partitioning with certified lower bounds."""
