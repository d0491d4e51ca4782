"""What every stage stands on: the warehouse, the artifact store, the compute engine, the
deployment's settings file and the terminal. Nothing here knows about models."""
