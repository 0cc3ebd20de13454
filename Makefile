# The README's two commands: `make demo` (set up + main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv/ and install the project with its test extras

demo: setup  ## synthetic dataset -> small CycleGAN on the CPU -> translated test images
	$(PY) -m cyclegan synth --kind colorshift --out $(DEMO_DIR)/data --n-train 200 --n-test 16 --size 32 --seed 0
	$(PY) -m cyclegan train --dataroot $(DEMO_DIR)/data --name colorshift --checkpoints_dir $(DEMO_DIR)/checkpoints \
		--netG resnet_2blocks --ngf 16 --ndf 16 --load_size 32 --crop_size 32 --n_epochs 3 --n_epochs_decay 2 \
		--num_threads 1 --device cpu
	$(PY) -m cyclegan translate --checkpoint $(DEMO_DIR)/checkpoints/colorshift/latest_net_G_A.pth \
		--input $(DEMO_DIR)/data/testA --output $(DEMO_DIR)/translated/testA_to_B
	@echo "translated test images: $(DEMO_DIR)/translated/testA_to_B (ground truth in $(DEMO_DIR)/data/testA_gt)"

test: setup  ## the whole test suite
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check cyclegan orchestrator tests

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
