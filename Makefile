# Front door. `make demo` and `make check` install what is missing first
# (scripts/install-deps.sh), so a fresh Debian machine needs nothing else.
MAKEFLAGS += --no-print-directory
JOBS    ?= $(shell nproc)
PYTHON  ?= /usr/bin/python3
FUZZ_SECONDS ?= 20

.PHONY: all deps release asan tsan fuzz check unit e2e fuzz-run tsan-run bench demo lint format clean \
	install deb deb-check

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

# `make install PREFIX=/usr/local DESTDIR=...`: the binary, sluice(8), the
# systemd unit, the example config (never over an existing one: that one
# is left and the new file goes beside it as sluice.yaml.default), and
# README, docs/ and examples/ in share/doc/sluice, and sluice's Redis module
# (MODULE, beside BIN: redis-server --loadmodule PREFIX/lib/sluice/...).
# BIN is what gets installed; the default is the release build, made first.
# The config lives in /etc/sluice for PREFIX=/usr, else PREFIX/etc/sluice.
PREFIX  ?= /usr/local
BIN     ?= build/sluice
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/sluice
UNITDIR ?= $(PREFIX)/lib/systemd/system
LIBDIR  ?= $(PREFIX)/lib/sluice
MODULE  ?= $(dir $(BIN))sluice_redis.so
ifeq ($(PREFIX),/usr)
SYSCONFDIR ?= /etc
else
SYSCONFDIR ?= $(PREFIX)/etc
endif
INSTALL_DEPS := $(if $(filter build/sluice,$(BIN)),release)

install: $(INSTALL_DEPS)
	@test -x "$(BIN)" || { echo "install: $(BIN) is not built"; exit 1; }
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)/man8" "$(DESTDIR)$(UNITDIR)" \
		"$(DESTDIR)$(SYSCONFDIR)/sluice" "$(DESTDIR)$(DOCDIR)"
	install -m 0755 "$(BIN)" "$(DESTDIR)$(BINDIR)/sluice"
	@test -r "$(MODULE)" || { echo "install: $(MODULE) is not built"; exit 1; }
	install -d "$(DESTDIR)$(LIBDIR)"
	install -m 0755 "$(MODULE)" "$(DESTDIR)$(LIBDIR)/sluice_redis.so" # redis-server wants x
	gzip -9n -c man/sluice.8 > "$(DESTDIR)$(MANDIR)/man8/sluice.8.gz"
	chmod 0644 "$(DESTDIR)$(MANDIR)/man8/sluice.8.gz"
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		dist/sluice.service.in > "$(DESTDIR)$(UNITDIR)/sluice.service"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/sluice.service"
	@if [ -e "$(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml" ]; then \
		echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml;" \
			"the new example is sluice.yaml.default"; \
		install -m 0644 dist/sluice.yaml "$(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml.default"; \
	else \
		echo install -m 0644 dist/sluice.yaml "$(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml"; \
		install -m 0644 dist/sluice.yaml "$(DESTDIR)$(SYSCONFDIR)/sluice/sluice.yaml"; \
	fi
	install -m 0644 README.md docs/*.md "$(DESTDIR)$(DOCDIR)/"
	install -d "$(DESTDIR)$(DOCDIR)/examples"
	install -m 0644 examples/* "$(DESTDIR)$(DOCDIR)/examples/"

# `make deb`: build/sluice_VERSION_ARCH.deb with dpkg-deb (scripts/mkdeb.sh);
# DEB_OUT puts it elsewhere. `make deb-check` also runs lintian and
# systemd-analyze verify on it, each skipped with a note when not installed.
DEB_OUT ?= build

deb: $(INSTALL_DEPS)
	@./scripts/mkdeb.sh "$(BIN)" "$(DEB_OUT)"

deb-check: $(INSTALL_DEPS)
	@./scripts/mkdeb.sh "$(BIN)" "$(DEB_OUT)" --check

clean:
	rm -rf build build-asan build-tsan build-fuzz
