# callmask: two commands on a fresh Debian 12 machine, as root.
#   make run   install what is missing and start the platform on its defaults
#   make test  install the same plus test tools and run every check and test
.PHONY: run test bench system python python-test clean

run: system python
	.venv/bin/callmask run

test: system python-test
	scripts/test.sh

bench: system python-test
	.venv/bin/python bench/run.py

system:
	scripts/install-system.sh

python:
	scripts/install-python.sh

python-test:
	scripts/install-python.sh test

clean:
	rm -rf .venv var .mypy_cache .ruff_cache .pytest_cache .hypothesis
