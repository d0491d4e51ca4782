"""The user–item bipartite graph of a day's train edges, and the negatives sampled from it."""
