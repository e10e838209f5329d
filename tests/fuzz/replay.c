/* replay: runs a fuzz target's LLVMFuzzerTestOneInput on every file of the corpora named
 * on the command line (files, or directories read one level deep), without libFuzzer,
 * so make check replays the committed corpora with the ordinary compiler. A property that
 * fails aborts; exit 0 means every input passed. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static const char *current;   /* the input being run, named when it aborts */

static void
on_abort(int sig)
{
	(void)sig;
	if (current) {
		(void)!write(STDERR_FILENO, "replay: the failing input is ", 29);
		(void)!write(STDERR_FILENO, current, strlen(current));
		(void)!write(STDERR_FILENO, "\n", 1);
	}
	signal(SIGABRT, SIG_DFL);
	raise(SIGABRT);
}

static int
replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char *p = NULL;
	size_t n = 0, cap = 0;

	if (!f) {
		fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (n == cap) {
			cap = cap ? 2 * cap : 4096;
			unsigned char *q = realloc(p, cap);
			if (!q) {
				fprintf(stderr, "replay: out of memory reading %s\n", path);
				free(p);
				fclose(f);
				return -1;
			}
			p = q;
		}
		size_t got = fread(p + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	/* An exact-size copy, so ASan sees a read past the input as libFuzzer would. */
	unsigned char *in = malloc(n ? n : 1);
	if (!in) {
		free(p);
		return -1;
	}
	memcpy(in, p, n);
	free(p);
	current = path;
	LLVMFuzzerTestOneInput(in, n);
	current = NULL;
	free(in);
	return 0;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files of dir in name order, so a failure reproduces in the same order. */
static int
replay_dir(const char *dir, size_t *count)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (!d) {
		fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			char **q = realloc(names, cap * sizeof *q);
			if (!q) {
				rc = -1;
				break;
			}
			names = q;
		}
		size_t len = strlen(dir) + strlen(e->d_name) + 2;
		if (!(names[n] = malloc(len))) {
			rc = -1;
			break;
		}
		snprintf(names[n++], len, "%s/%s", dir, e->d_name);
	}
	closedir(d);
	if (names)
		qsort(names, n, sizeof *names, by_name);
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
			if (replay_file(names[i]) < 0)
				rc = -1;
			else
				(*count)++;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int
main(int argc, char **argv)
{
	size_t count = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
		return 2;
	}
	signal(SIGABRT, on_abort);
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (S_ISDIR(st.st_mode)) {
			if (replay_dir(argv[i], &count) < 0)
				return 1;
		} else {
			if (replay_file(argv[i]) < 0)
				return 1;
			count++;
		}
	}
	printf("%s: %zu inputs replayed\n", argv[0], count);
	return 0;
}
