# The Makefile's pattern rule turns the % of "%.c" in its prerequisites into the stem, so
# it finds no objects of a tool; naming them here links them ($^ drops duplicates).
EXTRA_OBJ_nws-pipe := $(patsubst %.c,$(O)/%.o,$(wildcard cmd/nws-pipe/*.c))
