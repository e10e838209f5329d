# The benchmarks' load generator (tests/bench/load.c; tests/README.md), built by make bench.
# It needs only libwebsockets (SHA-1 and base64 for the handshake), not libcommon: a
# benchmark should build even while a library module is half-written.
BENCH_TOOLS += $(O)/bench/nws-load

$(O)/bench/nws-load: $(O)/tests/bench/load.o
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(PKG_LIBS)
