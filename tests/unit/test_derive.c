/* derive: a cancelled job that has not started never runs, one cancelled while running
 * is taken over by a new start of the same name, and derive_pending counts what a caller
 * still waits for. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
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
	derive_cancel(dv, jb);   /* queued behind "first": dropped, never derived */
	assert_int_equal(derive_pending(dv), 1);
	derive_start(dv, "third", done, &c);
	collect_until(dv, &c.calls, 1);
	assert_int_equal(a.calls, 1);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cancelled_jobs_do_not_run),
		cmocka_unit_test(test_reopened_name_is_derived_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
