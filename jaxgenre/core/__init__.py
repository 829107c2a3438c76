"""What every other room stands on: the device mesh and shardings, process settings for the
command-line entry points, and the host malloc. Imports nothing else of jaxgenre."""
