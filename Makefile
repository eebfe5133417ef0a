.PHONY: install test test-slow test-slurm
install:
	bash scripts/install.sh
test:
	python3 -m pytest -q
test-slow:
	python3 -m pytest -q -m slow
test-slurm:
	python3 -m pytest -q -m slurm
