"""Small helpers the rest of groundup stands on: files, devices, processes, errors, logs."""
