# callmask: two commands on a fresh Debian 12 machine, as root.
#   make run   install what is missing and start the platform on its defaults
#   make test  install the same plus test tools and run every check and test
.PHONY: run test bench system python python-test frontend clean

run: system python frontend
	.venv/bin/callmask run

test: system python-test frontend
	scripts/test.sh

bench: system python-test
	.venv/bin/python bench/run.py

system:
	scripts/install-system.sh

python:
	scripts/install-python.sh

python-test:
	scripts/install-python.sh test

frontend:
	scripts/install-frontend.sh

clean:
	rm -rf .venv var .frontend .mypy_cache .ruff_cache .pytest_cache .hypothesis
