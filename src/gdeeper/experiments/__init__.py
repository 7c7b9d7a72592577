"""Model builders and data for the experiments of the original study."""
