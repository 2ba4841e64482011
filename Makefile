# dmq_rs — Kamailio's DMQ module in Rust.
#   make          build build/dmq_rs.so (for the machine's Kamailio, Debian 12: 5.6)
#   make KAMAILIO=6.0
#                 build build/kamailio-6.0/dmq_rs.so for Kamailio 6.0 (Debian 13
#                 root in .cache/, made by `make deps`)
#   make KAMAILIO=6.1
#                 build build/kamailio-6.1/dmq_rs.so for Kamailio 6.1 (Debian
#                 testing root in .cache/, made by `make deps`)
#   make run      a local three-node registrar cluster using dmq_rs: shows the
#                 nodes, registers contacts on one and shows them on the
#                 others (Ctrl-C, or `make stop` from another shell, stops it)
#   make test     formatting, clippy and doc links (make lint), unit tests, then the
#                 integration tests (real Kamailio processes) on the host's
#                 Kamailio, on Kamailio 6.0 and 6.1
#   make install  copy the module into Kamailio's module directory
#   make deb      Debian packages kamailio-dmq-rs for 5.6, 6.0 and 6.1 (build/deb/),
#                 checked by lintian
#   make deps     install what is missing (Debian packages, Kamailio headers)
#   make bench    dmq_rs against the stock dmq.so, side by side (bench/results/)
#   make fuzz     fuzz the notification parser and node list (nightly + cargo-fuzz)
#   make miri     the kamailio crate's unit tests (the shm layer) under Miri (nightly + miri)

CARGO ?= cargo
# The Kamailio release to build for: empty for the machine's own, 6.0 or 6.1.
KAMAILIO ?=
MODULE_HOST := build/dmq_rs.so
MODULE_60 := build/kamailio-6.0/dmq_rs.so
MODULE_61 := build/kamailio-6.1/dmq_rs.so
ifeq ($(KAMAILIO),)
MODULE := $(MODULE_HOST)
CARGO_ENV :=
BUILT := target/release/libdmq_rs.so
else ifneq ($(filter 6.0 6.1,$(KAMAILIO)),)
MODULE := build/kamailio-$(KAMAILIO)/dmq_rs.so
# A target dir of its own: the builds never invalidate each other.
CARGO_ENV := KAMAILIO_RELEASE=$(KAMAILIO) CARGO_TARGET_DIR=target/kamailio-$(KAMAILIO)
BUILT := target/kamailio-$(KAMAILIO)/release/libdmq_rs.so
else
$(error KAMAILIO=$(KAMAILIO): known are 6.0 and 6.1, or nothing for the machine's Kamailio)
endif
# The Debian root a release runs in (scripts/debian-root.sh).
ROOT_6.0 := .cache/debian13-root
ROOT_6.1 := .cache/debian-testing-root
# Where the installed Kamailio keeps its modules (next to tm.so); for 6.0
# and 6.1, the same place in their Debian root.
ifneq ($(KAMAILIO),)
KAMAILIO_MODDIR ?= $(shell d=$$(chroot $(ROOT_$(KAMAILIO)) dpkg -L kamailio 2>/dev/null | grep '/modules/tm.so$$' | head -1) && [ -n "$$d" ] && echo "$(CURDIR)/$(ROOT_$(KAMAILIO))$$(dirname $$d)")
else
KAMAILIO_MODDIR ?= $(shell dirname "$$(dpkg -L kamailio 2>/dev/null | grep '/modules/tm.so$$' | head -1)" 2>/dev/null)
endif

# The chart uses Debian's python3-matplotlib, so Debian's interpreter.
DEBIAN_PYTHON ?= /usr/bin/python3

.PHONY: all deps build build-6.0 build-6.1 install deb stop lint test unit-test integration-test run bench fuzz miri clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	$(CARGO_ENV) $(CARGO) build --release -p dmq_rs
	@mkdir -p $(dir $(MODULE))
	cp $(BUILT) $(MODULE).tmp && mv $(MODULE).tmp $(MODULE)
	@echo "built $(MODULE)"

build-6.0: deps
	@$(MAKE) --no-print-directory build KAMAILIO=6.0

build-6.1: deps
	@$(MAKE) --no-print-directory build KAMAILIO=6.1

install: build
	@test -n "$(KAMAILIO_MODDIR)" || { echo "cannot find Kamailio's module directory; set KAMAILIO_MODDIR" >&2; exit 1; }
	install -m 0644 $(MODULE) $(KAMAILIO_MODDIR)/dmq_rs.so
	@echo "installed $(KAMAILIO_MODDIR)/dmq_rs.so"

# One package per release, made with dpkg-shlibdeps, dpkg-gencontrol and
# dpkg-deb; lintian errors fail it (scripts/deb.sh).
deb: build build-6.0 build-6.1
	@sh scripts/deb.sh host
	@sh scripts/deb.sh 6.0
	@sh scripts/deb.sh 6.1

# Unit tests and the integration suite on the machine's Kamailio (plus the
# mixed-version clusters, which start every release themselves), then the
# integration suite again on Kamailio 6.0 and on Kamailio 6.1.
# The tests that start each release themselves (mixed_versions,
# kamailio_6_1) run once, in the host pass. A test that cannot run here
# fails, unless DMQ_RS_ALLOW_SKIP names why (netns, 6.0, 6.1, host or all:
# tests/common/skip.rs); e.g. `make test DMQ_RS_ALLOW_SKIP=netns` without root.
MODULES := DMQ_RS_MODULE_HOST=$(CURDIR)/$(MODULE_HOST) DMQ_RS_MODULE_60=$(CURDIR)/$(MODULE_60) DMQ_RS_MODULE_61=$(CURDIR)/$(MODULE_61)
EACH_RELEASE_TESTS := $(foreach t,$(filter-out mixed_versions kamailio_6_1,$(basename $(notdir $(wildcard tests/*.rs)))),--test $(t))
# On the host's 5.6.3 the TLS tests are filtered out (libtest reports them
# "filtered out", never "ok"): its TLS with OpenSSL 3 crashes now and then
# (kamailio/kamailio#3791, doc/security.md); their TCP twins run, and they
# run on 6.0 and 6.1. Every TLS test's name says `over_tls` or `a_tls_cluster`.
TLS_ON_56 := --skip over_tls --skip a_tls_cluster
test: lint build build-6.0 build-6.1 deb
	$(MODULES) DMQ_RS_MODULE=$(CURDIR)/$(MODULE_HOST) $(CARGO) test --release --workspace -- $(TLS_ON_56)
	$(MODULES) DMQ_RS_KAMAILIO=6.0 DMQ_RS_MODULE=$(CURDIR)/$(MODULE_60) $(CARGO) test --release -p dmq_rs $(EACH_RELEASE_TESTS)
	$(MODULES) DMQ_RS_KAMAILIO=6.1 DMQ_RS_MODULE=$(CURDIR)/$(MODULE_61) $(CARGO) test --release -p dmq_rs $(EACH_RELEASE_TESTS)

# Formatting (rustfmt.toml) and every clippy warning, in every crate,
# test and bench, are errors; so is a doc link to nothing (private items
# included: the docs name the types they depend on).
lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --release --no-deps --workspace --document-private-items

run: build
	@bash scripts/run-cluster.sh

stop:
	@bash scripts/run-cluster.sh stop

# Also the stock-only comparisons of the fault, DNS, mixed-version and convergence
# tests (#[ignore = "stock comparison: make bench"] there).
bench: build build-6.0 build-6.1
	@$(DEBIAN_PYTHON) -c "import matplotlib" 2>/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib
	@command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind
	DMQ_RS_MODULE=$(CURDIR)/$(MODULE) $(CARGO) bench --bench dmq_vs_stock
	$(DEBIAN_PYTHON) bench/plot.py bench/results
	$(MODULES) DMQ_RS_MODULE=$(CURDIR)/$(MODULE_HOST) $(CARGO) test --release -p dmq_rs --test faults --test dns --test mixed_versions --test convergence -- --ignored --test-threads=1

FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || { echo "needs cargo-fuzz: cargo install cargo-fuzz (and rustup toolchain install nightly)" >&2; exit 1; }
	cd crates/dmq_core/fuzz && for t in parse_body node_list body_check; do \
		$(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=70000 || exit 1; done

# The shm layer's unit tests (a malloc-backed stand-in for Kamailio's shm
# and locks) under Miri. Shm is never freed by design: leaks are expected.
miri:
	@$(CARGO) +nightly miri --version >/dev/null 2>&1 || { echo "needs Miri: rustup toolchain install nightly --component miri rust-src" >&2; exit 1; }
	MIRIFLAGS=-Zmiri-ignore-leaks $(CARGO) +nightly miri test -p kamailio

clean:
	$(CARGO) clean
	rm -rf build run
