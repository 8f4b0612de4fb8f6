# Front door. `make demo` and `make check` install what is missing first
# (scripts/install-deps.sh), so a fresh Debian machine needs nothing else.
MAKEFLAGS += --no-print-directory
JOBS    ?= $(shell nproc)
PYTHON  ?= /usr/bin/python3
FUZZ_SECONDS ?= 20

.PHONY: all deps release asan tsan fuzz check unit e2e fuzz-run tsan-run bench demo lint format clean

all: release

deps:
	@./scripts/install-deps.sh

release:
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSLUICE_BENCH=ON >/dev/null
	@cmake --build build -j $(JOBS)

asan:
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_TESTS=ON \
		-DSLUICE_SANITIZE="address;undefined" >/dev/null
	@cmake --build build-asan -j $(JOBS)

# Only the multi-threaded tests (tests/unit/<layer>/test_*_threads.c) run
# under ThreadSanitizer; build just those.
TSAN_TARGETS := $(foreach f,$(wildcard tests/unit/*/test_*_threads.c),\
	$(notdir $(patsubst %/,%,$(dir $(f))))_$(basename $(notdir $(f))))

tsan:
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_TESTS=ON \
		-DSLUICE_SANITIZE=thread >/dev/null
	@cmake --build build-tsan -j $(JOBS) --target $(TSAN_TARGETS)

fuzz:
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSLUICE_FUZZ=ON \
		-DSLUICE_SANITIZE="address;undefined" >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

lint:
	@./scripts/lint.sh

unit: asan
	@cd build-asan && ctest --output-on-failure -j $(JOBS)

tsan-run: tsan
	@cd build-tsan && ctest --output-on-failure -L threads

fuzz-run: fuzz
	@./scripts/fuzz-run.sh build-fuzz $(FUZZ_SECONDS)

e2e: asan
	@SLUICE_BIN=$(CURDIR)/build-asan/sluice $(PYTHON) -m pytest -q tests/e2e

check: deps lint
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory tsan-run
	@$(MAKE) --no-print-directory fuzz-run
	@$(MAKE) --no-print-directory e2e

bench: deps release
	@./scripts/bench.sh

demo: deps release
	@./scripts/demo.sh

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan build-fuzz
