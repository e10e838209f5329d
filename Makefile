# nws: build, test, install, run. `make check` is the one command that proves it works.
#
#   make            build every tool in cmd/ into $(O)/bin
#   make run        deps, build, then run nws-proxy on ws://localhost:9009
#   make check      deps, build, every test suite; ends with "N passed, N failed"
#                   (NWS_SLOW=1 make check adds the slow ones: 24 hosts)
#   make check-asan the same with AddressSanitizer and UndefinedBehaviorSanitizer
#   make fuzz       clang's libFuzzer on every tests/fuzz target, FUZZ_SECS=60 each
#   make bench      the benchmarks (needs root for the test hosts)
#   make install    PREFIX=/usr/local DESTDIR=
#   make deb        a Debian package (debian/) in $(O)/deb, checked with lintian

PREFIX  ?= /usr/local
DESTDIR ?=
O       ?= build
ZSHDIR  ?= $(PREFIX)/share/zsh/site-functions
PYTHON  ?= /usr/bin/python3
VERSION := 0.1.0

PKGS    := libwebsockets libsodium avahi-client libcbor jansson ldns
CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -MMD -MP \
           -DNWS_VERSION='"$(VERSION)"' -Ilibcommon
ifeq ($(SAN),1)
CFLAGS  += -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# Debian packages the build, the tests and the benchmarks need (README.md, Install). Node.js
# and npm count as present when the commands are, whoever packaged them.
DEBS := build-essential pkg-config libwebsockets-dev libsodium-dev libavahi-client-dev \
        libcbor-dev libjansson-dev libcmocka-dev python3 python3-pytest python3-websockets \
        python3-cbor2 python3-nacl avahi-daemon dbus iproute2 tcpdump procps \
        chromium libldns-dev bind9 bind9-utils bind9-dnsutils

LIB_SRC  := $(wildcard libcommon/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(O)/%.o)
LIB      := $(O)/libcommon.a
TOOLS    := $(notdir $(patsubst %/main.c,%,$(wildcard cmd/*/main.c)))
BINS     := $(TOOLS:%=$(O)/bin/%)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNITS    := $(UNIT_SRC:tests/unit/%.c=$(O)/unit/%)

all: $(BINS)

# A tool may add its own generated sources (embedded web assets) in cmd/<tool>/build.mk.
-include $(wildcard cmd/*/build.mk)
# The benchmarks' own programs (load generators): BENCH_TOOLS, built by make bench.
-include tests/bench/bench.mk
# The fuzz targets: their corpus replays (built by make units) and make fuzz.
-include tests/fuzz/fuzz.mk

$(O)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

.SECONDEXPANSION:
$(O)/bin/%: $$(addprefix $(O)/,$$(subst .c,.o,$$(wildcard cmd/$$*/*.c))) $$(EXTRA_OBJ_$$*) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIB) $(PKG_LIBS)

$(O)/unit/%: $(O)/tests/unit/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS) -lcmocka

units: $(UNITS)

deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q '^install ok installed' || echo $$p; done; \
		command -v node >/dev/null || echo nodejs; command -v npm >/dev/null || echo npm); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "missing Debian packages; run as root:"; \
		echo "  apt-get install -y" $$missing; exit 1; \
	fi
	@if [ -f tests/browser/package.json ] && [ ! -d tests/browser/node_modules ]; then \
		cd tests/browser && npm ci --no-audit --no-fund; fi

check: deps
	$(MAKE) all units
	NWS_BIN=$(abspath $(O)/bin) NWS_UNITS=$(abspath $(O)/unit) NWS_FUZZ=$(abspath $(O)/fuzz) \
	$(PYTHON) tests/run

check-asan: deps
	$(MAKE) O=build/asan SAN=1 all units
	NWS_BIN=$(abspath build/asan/bin) NWS_UNITS=$(abspath build/asan/unit) \
	NWS_FUZZ=$(abspath build/asan/fuzz) \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	NWS_ASAN=1 $(PYTHON) tests/run

bench: deps all $(BENCH_TOOLS)
	NWS_BIN=$(abspath $(O)/bin) NWS_BENCH_BIN=$(abspath $(O)/bench) $(PYTHON) tests/bench/run

run: deps all
	$(O)/bin/nws-proxy

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
		$(DESTDIR)$(PREFIX)/share/man/man7 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(ZSHDIR) \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	for m in $(wildcard man/*.1); do install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man1/; done
	for m in $(wildcard man/*.7); do install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man7/; done
	for c in $(wildcard completions/bash/*); do install -m 644 $$c $(DESTDIR)$(PREFIX)/share/bash-completion/completions/; done
	for c in $(wildcard completions/zsh/*); do install -m 644 $$c $(DESTDIR)$(ZSHDIR)/; done
	for c in $(wildcard completions/fish/*); do install -m 644 $$c $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/; done

# The package is built from a copy of the tree (tracked files as they are now), so the
# working build is untouched. As root, the Debian tools it needs are installed first.
DEB_TOOLS := dpkg-dev debhelper fakeroot lintian
deb:
	@missing=$$(for p in $(DEB_TOOLS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing; \
	elif [ -n "$$missing" ]; then \
		echo "make deb needs Debian packages; run as root:"; \
		echo "  apt-get install -y" $$missing; exit 1; \
	fi
	rm -rf $(O)/deb && mkdir -p $(O)/deb/nws-$(VERSION)
	if git rev-parse --git-dir >/dev/null 2>&1; then \
		git ls-files -z --cached --others --exclude-standard | \
		xargs -0 tar -cf - --no-recursion --ignore-failed-read | tar -xf - -C $(O)/deb/nws-$(VERSION); \
	else \
		tar -cf - --exclude=./$(O) --exclude=./build --exclude=node_modules . | \
		tar -xf - -C $(O)/deb/nws-$(VERSION); \
	fi
	cd $(O)/deb/nws-$(VERSION) && \
		env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS -u O -u SAN -u PREFIX -u DESTDIR \
		dpkg-buildpackage -us -uc -b -j2
	lintian --fail-on error $(O)/deb/nws_$(VERSION)_*.deb

clean:
	rm -rf $(O) build

.PHONY: all units deps check check-asan bench run install deb clean
# Objects are kept, so a rebuild after an edit compiles only what changed.
.SECONDARY:
-include $(shell find $(O) -path $(O)/deb -prune -o -name '*.d' -print 2>/dev/null)
