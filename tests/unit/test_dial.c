/* dial: the addresses of one advertisement are one node. One is dialled at a time; the
 * others learn what its handshake proved (covered, ourselves) or are dialled when it
 * fails or is lost; addresses of other instances, or of none, are dialled at once. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "dial.h"

static struct lws_context *cx;
static struct dial_target *started[8];
static int nstarted;

static int
start(void *ctx, struct dial_target *t)
{
	(void)ctx;
	if (nstarted < 8)
		started[nstarted] = t;
	nstarted++;
	return 0;
}

static struct dial d;
static const unsigned char node[LINK_NODE_LEN] = { 7 };

static int
setup(void **state)
{
	(void)state;
	dial_init(&d, cx, start, NULL);
	nstarted = 0;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	dial_stop(&d);
	dial_clear(&d);
	return 0;
}

static void
test_second_address_waits_and_is_covered(void **state)
{
	(void)state;
	struct dial_target *v4 = dial_add(&d, "10.0.0.2", 4000, "eth0", "a1", "local");
	struct dial_target *v6 = dial_add(&d, "fe80::2%eth0", 4000, "eth0", "a1", "local");
	assert_int_equal(nstarted, 1);
	assert_ptr_equal(started[0], v4);
	assert_int_equal(v6->state, DIAL_WAITING);
	dial_handshaken(v4, node);
	v4->state = DIAL_UP;
	assert_int_equal(v6->state, DIAL_COVERED);
	assert_memory_equal(v6->node, node, LINK_NODE_LEN);
	dial_all(&d);
	assert_int_equal(nstarted, 1);
	/* The node's link goes: both are dialled again (after their backoff). */
	dial_down(v4, NULL);
	dial_uncover(&d, node);
	assert_int_equal(v6->state, DIAL_IDLE);
}

static void
test_failure_dials_the_next_address_at_once(void **state)
{
	(void)state;
	struct dial_target *v4 = dial_add(&d, "10.0.0.2", 4000, NULL, "a1", "local");
	struct dial_target *v6 = dial_add(&d, "fd00::2", 4000, NULL, "a1", "local");
	assert_int_equal(nstarted, 1);
	dial_down(v4, NULL);
	assert_int_equal(nstarted, 2);
	assert_ptr_equal(started[1], v6);
	assert_int_equal(v6->state, DIAL_DIALING);
	assert_int_equal(v4->state, DIAL_IDLE);
}

static void
test_self_is_self_at_every_address(void **state)
{
	(void)state;
	struct dial_target *v4 = dial_add(&d, "10.0.0.2", 4000, NULL, "a1", "local");
	struct dial_target *v6 = dial_add(&d, "fd00::2", 4000, NULL, "a1", "local");
	dial_self(v4);
	assert_int_equal(v6->state, DIAL_SELF);
	dial_down(v4, NULL);
	dial_all(&d);
	assert_int_equal(nstarted, 1);
}

static void
test_lost_address_hands_over(void **state)
{
	(void)state;
	struct dial_target *v4 = dial_add(&d, "10.0.0.2", 4000, NULL, "a1", "local");
	struct dial_target *v6 = dial_add(&d, "fd00::2", 4000, NULL, "a1", "local");
	dial_remove(v4);
	assert_int_equal(nstarted, 2);
	assert_ptr_equal(started[1], v6);
}

static void
test_other_instances_and_static_peers_dial_at_once(void **state)
{
	(void)state;
	dial_add(&d, "10.0.0.2", 4000, NULL, "a1", "local");
	dial_add(&d, "10.0.0.3", 4000, NULL, "b2", "local");
	dial_add(&d, "10.0.0.2", 4001, NULL, "a1", "local");   /* another port: another listener */
	dial_add(&d, "10.0.0.4", 4000, NULL, NULL, NULL);
	dial_add(&d, "10.0.0.5", 4000, NULL, NULL, NULL);
	assert_int_equal(nstarted, 5);
}

static void
test_a_copied_instance_name_elsewhere_cannot_hold_a_node_back(void **state)
{
	(void)state;
	/* A member publishes a1's name and port in another domain and on another interface,
	 * at its own addresses: each is its own advertisement, dialled at once, and never
	 * made to wait on (or covered by) the node a1's dial reaches. */
	struct dial_target *real = dial_add(&d, "10.0.0.2", 4000, "eth0", "a1", "local");
	dial_add(&d, "10.9.9.9", 4000, "eth0", "a1", "example.org");
	dial_add(&d, "10.8.8.8", 4000, "wlan0", "a1", "local");
	assert_int_equal(nstarted, 3);
	dial_handshaken(real, node);
	assert_int_equal(started[1]->state, DIAL_DIALING);
	assert_int_equal(started[2]->state, DIAL_DIALING);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_second_address_waits_and_is_covered, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_failure_dials_the_next_address_at_once, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_self_is_self_at_every_address, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_lost_address_hands_over, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_instances_and_static_peers_dial_at_once,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_a_copied_instance_name_elsewhere_cannot_hold_a_node_back, setup, teardown),
	};
	struct lws_context_creation_info info;

	lws_set_log_level(0, NULL);
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN;
	if (!(cx = lws_create_context(&info)))
		return 1;
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	lws_context_destroy(cx);
	return rc;
}
