"""forgeflow tasks: the algorithms as plain functions, one sub-package per domain."""
