"""Reports: the paper's tables rebuilt beside our runs, Pareto and compute plots, sample grids."""
