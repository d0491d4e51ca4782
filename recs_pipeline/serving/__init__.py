"""Publication: the top-K lists, the serving files applications read, the pinned published
model, and the checks that these copies agree with the warehouse."""
