.PHONY: install test
install:
	bash scripts/install.sh
test:
	python3 -m pytest -q
