# CloudPhoenix — one entry point for people and CI.
#   make demo   bring the lab up and run the main job on it
#   make test   everything CI runs (lint, sanity, pytest, molecule)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
REPO := $(CURDIR)
VENV := $(REPO)/.venv
TOOLS_VENV := $(REPO)/.build/tools-venv
BIN := $(VENV)/bin
PY := $(BIN)/python
COLLECTIONS := $(REPO)/.build/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/cloudphoenix/stack
SANITY_ROOT ?= $(REPO)/.build/sanity/ansible_collections/cloudphoenix/stack
export ANSIBLE_CONFIG := $(REPO)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_HOME := $(REPO)/.build/ansible-home
export PATH := $(BIN):$(PATH)
PLAYBOOK := $(BIN)/ansible-playbook -i $(REPO)/inventories/lab
PYTEST_ARGS ?=

.PHONY: setup test lint sanity pytest unit integration molecule demo lab-up lab-down bench build clean

## setup: Debian packages from bindep.txt, pinned venv, the checkout linked as the collection
setup: $(VENV)/.installed $(TOOLS_VENV)/.installed $(COLLECTION_LINK) $(HOME)/.ansible/test/cache/get_pip_24_2.py
	@bash hack/setup-system.sh

$(VENV)/.installed: requirements.txt
	@test -x $(PY) || python3.11 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

# checkov pins older boto3/packaging than the main venv: it gets a venv of its own.
$(TOOLS_VENV)/.installed: requirements-tools.txt
	@test -x $(TOOLS_VENV)/bin/python || python3.11 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-tools.txt
	@touch $@

$(COLLECTION_LINK):
	@mkdir -p $(dir $@)
	@ln -sfn ../../../.. $@

# ansible-test downloads a get-pip script for its venvs; offline we provide a stand-in.
$(HOME)/.ansible/test/cache/get_pip_24_2.py: hack/get_pip_standin.py
	@mkdir -p $(dir $@)
	@cp $< $@

## test: what CI runs
test: setup lint sanity pytest molecule
	@echo "make test: all stages passed"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production

## sanity: ansible-test needs the path ansible_collections/cloudphoenix/stack: copy the Ansible content there
# (plugins, roles, playbooks and collection metadata; services/ and tests/ have ruff, bandit and pytest)
SANITY_CONTENT := .gitignore galaxy.yml meta plugins roles playbooks changelogs tests/sanity
sanity: setup
	@rm -rf $(SANITY_ROOT) && mkdir -p $(SANITY_ROOT)
	@git ls-files -co --exclude-standard -z -- $(SANITY_CONTENT) | tar --null -T - -cf - | tar -xf - -C $(SANITY_ROOT)
	@cd $(SANITY_ROOT) && git init -q && git add -A  # its own repo: ansible-test lists files with git
	cd $(SANITY_ROOT) && $(BIN)/ansible-test sanity --venv --python 3.11 --color no $(SANITY_ARGS)

pytest: setup
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

molecule: setup
	$(BIN)/molecule test --all

## demo: the lab up, the main job run on it, the result printed
demo: setup
	$(PLAYBOOK) playbooks/demo.yml

lab-up: setup
	$(PLAYBOOK) playbooks/lab_up.yml

lab-down: setup
	$(PLAYBOOK) playbooks/lab_down.yml

bench: setup
	$(PY) -m bench

build: setup
	@mkdir -p .build/dist
	$(BIN)/ansible-galaxy collection build --force --output-path .build/dist .

clean: lab-down
	rm -rf .build /var/tmp/cloudphoenix-services-venv
