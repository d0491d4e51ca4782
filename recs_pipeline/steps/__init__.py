"""The core half of each asset step: what an asset body calls between reading its inputs and
reporting, so the asset modules stay declarations."""
