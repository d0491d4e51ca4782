"""Full-ranking evaluation: the metrics, a checkpoint's score function, model selection on the
validation slice, and the quality gate that decides whether a day is published."""
