"""The logs: reading landing files into the warehouse, profiling a log, the temporal split,
item features from a catalogue, and the synthetic log the demo and tests run on."""
