/*
 * presence.c — the push-presence handler: GET /presence/<channel>.
 *
 * Answers the broker's view of who is present on the channel, the same
 * JSON as the ZeroMQ API's PRESENCE:
 *   {"channel":"c","count":N,"members":[{"identity":..,"connections":N,"since":T}]}
 */
#include "mod_push.h"
#include "link.h"
#include "push_token.h"

#include "http_protocol.h"
#include "apr_strings.h"

#include <string.h>

int push_presence_handler(request_rec *r)
{
    push_settings set;
    int status;
    const char *channel = push_handler_start(r, M_GET, "ask for presence with GET", &set, &status);
    if (!channel)
        return status;
    if (!push_token_check(r, &set, channel, PUSH_RIGHT_PRESENCE, NULL))
        return OK;
    push_child *ch = push_child_get();
    push_frame req[2] = { push_str_frame(PUSH_LINK_PRESENCE), push_str_frame(channel) };
    push_frames rep;
    if (!push_link_up(ch->link)
        || push_link_request(ch->link, req, 2, ch->broker_timeout_ms, &rep) < 0) {
        return push_unavailable(r, &set, "the message broker is not reachable; retry later");
    }
    int rc;
    if (push_frame_is(&rep, 2, PUSH_REP_OK) && rep.count == 4) {
        ap_set_content_type(r, "application/json");
        apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
        ap_rwrite(rep.frame[3].data, (int)rep.frame[3].size, r);
        ap_rputs("\n", r);
        rc = OK;
    }
    else {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(20060)
                      "pushbrokerd could not answer a presence query for %s", channel);
        rc = push_json_error(r, HTTP_BAD_GATEWAY, PUSH_ERR_UNAVAILABLE,
                             "the message broker could not answer");
    }
    push_frames_close(&rep);
    return rc;
}
