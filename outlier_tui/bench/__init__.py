"""`outlier bench`: measured, side-by-side ratios of the streamed engine against
a fully resident mlx-lm run, the raw disk and the offline-optimal cache, on
one model in one run (the machines here are shared and noisy)."""
