/* derive: a cancelled job that has not started never runs, one cancelled while running
 * is taken over by a new start of the same name, and derive_pending counts what a caller
 * still waits for. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "derive.h"

struct seen {
	int calls;
	struct keys *k;
};

static void
done(void *ctx, struct derive_job *j, struct keys *k)
{
	struct seen *s = ctx;

	(void)j;
	s->calls++;
	keys_free(s->k);
	s->k = k;
}

/* Collects until *count reaches want (a derivation takes far less than the 30 s). */
static void
collect_until(struct derive *dv, const int *count, int want)
{
	struct pollfd p = { .fd = derive_fd(dv), .events = POLLIN };

	while (*count < want) {
		assert_true(poll(&p, 1, 30000) == 1);
		derive_collect(dv);
	}
}

static void
test_cancelled_jobs_do_not_run(void **state)
{
	struct derive *dv = derive_new();
	struct seen a = { 0 }, b = { 0 }, c = { 0 };

	(void)state;
	assert_non_null(dv);
	derive_start(dv, "first", done, &a);
	struct derive_job *jb = derive_start(dv, "second", done, &b);
	assert_int_equal(derive_pending(dv), 2);
	derive_cancel(dv, jb);   /* queued, or running beside "first": never reported */
	assert_int_equal(derive_pending(dv), 1);
	derive_start(dv, "third", done, &c);
	collect_until(dv, &c.calls, 1);
	collect_until(dv, &a.calls, 1);
	assert_int_equal(b.calls, 0);
	assert_int_equal(derive_pending(dv), 0);
	struct keys *want = keys_derive("third");
	assert_memory_equal(c.k->channel, want->channel, KEYS_LEN);
	keys_free(want);
	keys_free(a.k);
	keys_free(c.k);
	derive_free(dv);
}

static void
test_reopened_name_is_derived_once(void **state)
{
	struct derive *dv = derive_new();
	struct seen a = { 0 }, b = { 0 };

	(void)state;
	assert_non_null(dv);
	/* Cancelled while queued or already running; either way one result, for b. */
	struct derive_job *j = derive_start(dv, "again", done, &a);
	derive_cancel(dv, j);
	derive_start(dv, "again", done, &b);
	assert_int_equal(derive_pending(dv), 1);
	collect_until(dv, &b.calls, 1);
	assert_int_equal(a.calls, 0);
	assert_int_equal(derive_pending(dv), 0);
	struct keys *want = keys_derive("again");
	assert_memory_equal(b.k->channel, want->channel, KEYS_LEN);
	keys_free(want);
	keys_free(b.k);
	derive_free(dv);
}

/* More jobs than workers, some reopened while a worker may hold them: each open name is
 * reported once, with its own keys, whichever worker derived it. */
static void
test_many_jobs_each_reported_once(void **state)
{
	enum { N = 9 };
	struct derive *dv = derive_new();
	struct seen s[N] = { { 0 } }, gone[N] = { { 0 } };
	char name[N][24];
	int total = 0;

	(void)state;
	assert_non_null(dv);
	for (int i = 0; i < N; i++) {
		snprintf(name[i], sizeof name[i], "many-%d", i);
		if (i % 3 == 1)
			derive_cancel(dv, derive_start(dv, name[i], done, &gone[i]));
		assert_non_null(derive_start(dv, name[i], done, &s[i]));
	}
	assert_int_equal(derive_pending(dv), N);
	for (int i = 0; i < N; i++) {
		collect_until(dv, &s[i].calls, 1);
		assert_int_equal(gone[i].calls, 0);
	}
	assert_int_equal(derive_pending(dv), 0);
	for (int i = 0; i < N; i++) {
		struct keys *want = keys_derive(name[i]);
		total += s[i].calls;
		assert_memory_equal(s[i].k->channel, want->channel, KEYS_LEN);
		keys_free(want);
		keys_free(s[i].k);
	}
	assert_int_equal(total, N);
	derive_free(dv);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cancelled_jobs_do_not_run),
		cmocka_unit_test(test_reopened_name_is_derived_once),
		cmocka_unit_test(test_many_jobs_each_reported_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
