/*
 * status.h — statistics of every Apache child, and the push-status handler.
 *
 * Each child publishes its counters into its own slot of a shared memory
 * segment that the parent created before forking (post_config); the
 * push-status handler of any child reads every slot, so it reports per child
 * and in total even when the broker is down.  A slot belongs to a live
 * process; a child claims a free one (or one of a process that is gone) with
 * a compare-and-swap on its pid, and a slot whose process is gone is left
 * out of reports.
 */
#ifndef PUSH_STATUS_H
#define PUSH_STATUS_H

#include "mod_push.h"

/* Parent, post_config: create the segment (one slot per possible child).
 * Returns APR_SUCCESS or the error (logged). */
apr_status_t push_status_init(apr_pool_t *pconf, server_rec *s);

/* Child: claim a slot (child_init) / refresh it from the child's counters
 * (called often, from the reactor thread). */
void push_status_child_init(void);
void push_status_update(push_child *ch);

/* The push-status handler: JSON (default), Prometheus text
 * (?format=prometheus, or Accept: text/plain without text/html), or HTML
 * (?format=html, or a browser's Accept: text/html). */
int push_status_handler(request_rec *r);

#endif
