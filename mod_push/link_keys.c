/*
 * link_keys.c — CURVE keys of the link to pushbrokerd; see link_keys.h.
 */
#include "link_keys.h"
#include "mod_push.h"
#include "push_proto.h"

#include "apr_strings.h"
#include "http_log.h"

#include <errno.h>
#include <string.h>
#include <zmq.h>

APLOG_USE_MODULE(push);

static push_server_conf *s_conf(server_rec *s)
{
    return ap_get_module_config(s->module_config, &push_module);
}

/* Read a key file named relative to the ServerRoot into the config pool. */
static const char *s_load(cmd_parms *cmd, const char *arg, int secret, const char **out)
{
    const char *name = cmd->directive->directive;
    const char *path = ap_server_root_relative(cmd->pool, arg);
    push_curve_key key;
    char err[1024];
    int world = 0;
    if (!path)
        return apr_psprintf(cmd->pool, "%s: invalid path '%s'", name, arg);
    if (push_curve_load_key(path, key, &world, err, sizeof err) < 0)
        return apr_psprintf(cmd->pool, "%s: %s", name, err);
    if (secret && world)
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, cmd->server, APLOGNO(20091)
                     "%s: %s is readable by every user of this machine: anyone who reads it "
                     "can talk to pushbrokerd as this server (chmod 600 %s)", name, path, path);
    *out = apr_pstrdup(cmd->pool, key);
    explicit_bzero(key, sizeof key);
    return NULL;
}

const char *push_link_set_server_key(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    if (err)
        return err;
    push_server_conf *sc = s_conf(cmd->server);
    /* a public key may stand in the configuration itself */
    if (push_curve_decode(arg, strlen(arg), NULL) == 0) {
        sc->broker_server_key = arg;
        return NULL;
    }
    return s_load(cmd, arg, 0, &sc->broker_server_key);
}

const char *push_link_set_client_keys(cmd_parms *cmd, void *dummy, const char *first,
                                      const char *second)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    push_server_conf *sc = s_conf(cmd->server);
    const char *given = NULL;
    push_curve_key derived;
    if (!err && second)
        err = s_load(cmd, first, 0, &given);
    if (!err)
        err = s_load(cmd, second ? second : first, 1, &sc->broker_secret_key);
    if (!err && push_curve_public(sc->broker_secret_key, derived) < 0)
        err = "PushBrokerClientKeys: cannot derive the public key";
    if (!err && given && strcmp(given, derived) != 0)
        err = apr_psprintf(cmd->pool, "PushBrokerClientKeys: the public key in %s does not "
                           "belong to the secret key in %s", first, second);
    if (!err)
        sc->broker_public_key = apr_pstrdup(cmd->pool, derived);
    return err;
}

int push_link_check_keys(server_rec *s)
{
    push_server_conf *sc = s_conf(s);
    const char *endpoint = sc->broker ? sc->broker : PUSH_DEFAULT_LINK_ENDPOINT;
    if (sc->broker_secret_key && !sc->broker_server_key) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, APLOGNO(20090)
                     "PushBrokerClientKeys needs PushBrokerServerKey (the broker's public "
                     "key): without it the link would not use CURVE");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (sc->broker_server_key && !push_curve_applies(endpoint))
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, APLOGNO(20092)
                     "PushBrokerServerKey is not used: PushBroker %s is not tcp:// (the "
                     "broker uses CURVE on tcp:// only; a socket file is guarded by its "
                     "permissions)", endpoint);
    return OK;
}

int push_link_apply_keys(void *sock, server_rec *s, const char *endpoint, int *curve,
                         push_curve_key public_key)
{
    push_server_conf *sc = s_conf(s);
    push_curve_key secret;
    *curve = 0;
    if (!sc->broker_server_key || !push_curve_applies(endpoint))
        return 0;
    /* without PushBrokerClientKeys each child makes its own pair: enough
     * for a broker without curve_authorized_keys */
    if (sc->broker_secret_key) {
        memcpy(secret, sc->broker_secret_key, sizeof secret);
        memcpy(public_key, sc->broker_public_key, sizeof secret);
    }
    else if (zmq_curve_keypair(public_key, secret) != 0)
        return -1;
    int rc = push_curve_set_client(sock, sc->broker_server_key, public_key, secret);
    explicit_bzero(secret, sizeof secret);
    *curve = rc == 0;
    return rc;
}
