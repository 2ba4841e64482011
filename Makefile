# dmq_rs — Kamailio's DMQ module in Rust.
#   make          build build/dmq_rs.so
#   make run      a local three-node cluster using dmq_rs (Ctrl-C stops it)
#   make test     unit and integration tests (real Kamailio processes)
#   make install  copy the module into Kamailio's module directory
#   make deps     install what is missing (Debian packages, Kamailio headers)
#   make bench    dmq_rs against the stock dmq.so, side by side (bench/results/)
#   make fuzz     fuzz the notification parser and node list (nightly + cargo-fuzz)

CARGO ?= cargo
MODULE := build/dmq_rs.so
# Where the installed Kamailio keeps its modules (next to tm.so).
KAMAILIO_MODDIR ?= $(shell dirname "$$(dpkg -L kamailio 2>/dev/null | grep '/modules/tm.so$$' | head -1)" 2>/dev/null)

# The chart uses Debian's python3-matplotlib, so Debian's interpreter.
DEBIAN_PYTHON ?= /usr/bin/python3

.PHONY: all deps build install test unit-test integration-test run bench fuzz clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	$(CARGO) build --release -p dmq_rs
	@mkdir -p build
	cp target/release/libdmq_rs.so $(MODULE)
	@echo "built $(MODULE)"

install: build
	@test -n "$(KAMAILIO_MODDIR)" || { echo "cannot find Kamailio's module directory; set KAMAILIO_MODDIR" >&2; exit 1; }
	install -m 0644 $(MODULE) $(KAMAILIO_MODDIR)/dmq_rs.so
	@echo "installed $(KAMAILIO_MODDIR)/dmq_rs.so"

test: build
	DMQ_RS_MODULE=$(CURDIR)/$(MODULE) $(CARGO) test --release --workspace

run: build
	@bash scripts/run-cluster.sh

bench: build
	@$(DEBIAN_PYTHON) -c "import matplotlib" 2>/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib
	DMQ_RS_MODULE=$(CURDIR)/$(MODULE) $(CARGO) bench --bench dmq_vs_stock
	$(DEBIAN_PYTHON) bench/plot.py bench/results

FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || { echo "needs cargo-fuzz: cargo install cargo-fuzz (and rustup toolchain install nightly)" >&2; exit 1; }
	cd dmq/fuzz && for t in parse_body node_list; do \
		$(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=70000 || exit 1; done

clean:
	$(CARGO) clean
	rm -rf build run
