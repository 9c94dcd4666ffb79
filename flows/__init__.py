"""forgeflow's Prefect flows and the `forgeflow` CLI. Nothing imports this package."""
