/* idset: add/get/del against a plain array model through growth and backward-shift
 * deletes, the cap, id length bounds, iteration. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "idset.h"

#define N 4000

static void
test_model(void **state)
{
	static char ids[N][17];
	static int in[N];
	struct idset s;
	(void)state;
	idset_init(&s, 0);
	for (int i = 0; i < N; i++)
		snprintf(ids[i], sizeof ids[i], "%016x", i * 2654435761u);
	/* Random adds and deletes; after each step the set agrees with the model. */
	for (int step = 0; step < 40000; step++) {
		int i = (int)randombytes_uniform(N);
		if (randombytes_uniform(3)) {
			assert_int_equal(idset_add(&s, ids[i], &in[i]), !in[i]);
			in[i] = 1;
		} else {
			assert_int_equal(idset_del(&s, ids[i]), in[i]);
			in[i] = 0;
		}
		if (step % 1000 == 0) {
			size_t n = 0;
			for (int j = 0; j < N; j++) {
				struct idset_item *it = idset_get(&s, ids[j]);
				assert_int_equal(it != NULL, in[j]);
				if (it) {
					assert_string_equal(it->id, ids[j]);
					assert_ptr_equal(it->util, &in[j]);
				}
				n += (size_t)in[j];
			}
			assert_int_equal(idset_count(&s), n);
			size_t pos = 0, seen = 0;
			struct idset_item *it;
			while ((it = idset_next(&s, &pos)))
				seen++;
			assert_int_equal(seen, n);
		}
	}
	idset_clear(&s);
	assert_int_equal(idset_count(&s), 0);
	assert_null(idset_get(&s, ids[0]));
	idset_clear(&s);
}

static void
test_cap_and_lengths(void **state)
{
	struct idset s;
	char id[IDSET_ID_MAX + 2];
	(void)state;
	idset_init(&s, 3);
	assert_int_equal(idset_add(&s, "a", NULL), 1);
	assert_int_equal(idset_add(&s, "b", NULL), 1);
	assert_int_equal(idset_add(&s, "c", NULL), 1);
	assert_int_equal(idset_add(&s, "a", NULL), 0);   /* present: not refused at the cap */
	assert_int_equal(idset_add(&s, "d", NULL), -1);
	assert_int_equal(idset_del(&s, "b"), 1);
	assert_int_equal(idset_add(&s, "d", NULL), 1);
	assert_int_equal(idset_add(&s, "", NULL), -1);
	idset_clear(&s);
	assert_int_equal(s.max, 3);
	memset(id, 'x', sizeof id);
	id[IDSET_ID_MAX] = 0;
	assert_int_equal(idset_add(&s, id, NULL), 1);
	assert_non_null(idset_get(&s, id));
	id[IDSET_ID_MAX] = 'x';
	id[IDSET_ID_MAX + 1] = 0;
	assert_int_equal(idset_add(&s, id, NULL), -1);
	assert_null(idset_get(&s, id));
	idset_clear(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model),
		cmocka_unit_test(test_cap_and_lengths),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
