"""One module per source, named after its id in config.yaml, each defining `process_source`."""
