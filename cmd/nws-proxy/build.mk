# nws-proxy serves its web assets from memory: embed.sh turns them into a C file of byte
# arrays, linked in as $(EXTRA_OBJ_nws-proxy).
PROXY_DIR    := cmd/nws-proxy
PROXY_ASSETS := /=text/html=$(PROXY_DIR)/console.html \
                /console.css=text/css=$(PROXY_DIR)/console.css \
                /console.js=text/javascript=$(PROXY_DIR)/console.js \
                /nws.js=text/javascript=$(PROXY_DIR)/nws.js \
                /favicon.svg=image/svg+xml=$(PROXY_DIR)/favicon.svg \
                /error.css=text/css=$(PROXY_DIR)/error.css
PROXY_FILES  := $(foreach a,$(PROXY_ASSETS),$(lastword $(subst =, ,$(a))))

EXTRA_OBJ_nws-proxy := $(O)/gen/nws-proxy-assets.o

$(O)/gen/nws-proxy-assets.c: $(PROXY_FILES) $(PROXY_DIR)/embed.sh $(PROXY_DIR)/build.mk
	@mkdir -p $(@D)
	sh $(PROXY_DIR)/embed.sh $@ $(PROXY_ASSETS)

$(O)/gen/nws-proxy-assets.o: $(O)/gen/nws-proxy-assets.c $(PROXY_DIR)/assets.h
	$(CC) $(CFLAGS) -I$(PROXY_DIR) -c -o $@ $<

# route.c runs without lws in tests/unit/test_route.c, which fakes the connections and
# the pipeline around it.
$(O)/tests/unit/test_route.o: CPPFLAGS += -I$(PROXY_DIR)
$(O)/unit/test_route: $(O)/tests/unit/test_route.o $(O)/cmd/nws-proxy/route.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIB) $(PKG_LIBS) -lcmocka
