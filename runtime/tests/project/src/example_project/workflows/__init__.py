"""One sub-package per workflow; the registry finds them by their config.yaml."""
