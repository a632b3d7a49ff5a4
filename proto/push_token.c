/*
 * push_token.c — signed channel tokens; see push_token.h.
 */
#include "push_proto.h"
#include "push_token.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VERSION_PREFIX     "v1."
#define VERSION_PREFIX_LEN 3
#define MAX_SECONDS        9007199254740991.0    /* 2^53 - 1: exact in a JSON number */

const char *push_token_result_str(push_token_result r)
{
    switch (r) {
    case PUSH_TOKEN_OK:            return "token accepted";
    case PUSH_TOKEN_MISSING:       return "token missing";
    case PUSH_TOKEN_MALFORMED:     return "token malformed";
    case PUSH_TOKEN_BAD_SIGNATURE: return "token signature invalid";
    case PUSH_TOKEN_EXPIRED:       return "token expired";
    case PUSH_TOKEN_NO_RIGHT:      return "token does not grant this right on this channel";
    }
    return "token refused";
}

const char *push_token_right_name(int right)
{
    switch (right) {
    case PUSH_RIGHT_SUBSCRIBE: return "subscribe";
    case PUSH_RIGHT_PUBLISH:   return "publish";
    case PUSH_RIGHT_PRESENCE:  return "presence";
    }
    return "?";
}

/* ---- base64url ------------------------------------------------------------ */

static const char s_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t push_b64url_len(size_t len)
{
    return len / 3 * 4 + (len % 3 == 0 ? 0 : len % 3 + 1);
}

size_t push_b64url_encode(char *out, const void *in, size_t len)
{
    const unsigned char *p = in;
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = s_alphabet[v >> 18];
        *o++ = s_alphabet[(v >> 12) & 63];
        *o++ = s_alphabet[(v >> 6) & 63];
        *o++ = s_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = s_alphabet[v >> 18];
        *o++ = s_alphabet[(v >> 12) & 63];
    }
    else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = s_alphabet[v >> 18];
        *o++ = s_alphabet[(v >> 12) & 63];
        *o++ = s_alphabet[(v >> 6) & 63];
    }
    *o = '\0';
    return (size_t)(o - out);
}

static int s_b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int push_b64url_decode(const char *in, size_t len, unsigned char *out, size_t *outlen)
{
    if (len % 4 == 1)
        return -1;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = s_b64val(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)           /* unused trailing bits must be zero */
        return -1;
    *outlen = n;
    return 0;
}

/* ---- patterns and rights ----------------------------------------------------- */

int push_token_pattern_valid(const char *pattern, size_t len)
{
    if (!pattern || len == 0)
        return 0;
    /* a prefix of at most PUSH_CHANNEL_MAX - 1 bytes: no pattern is longer
     * than a channel name (fuzz_token found 128 bytes + '*' accepted) */
    if (pattern[len - 1] == '*')
        return len == 1 || (len <= PUSH_CHANNEL_MAX && push_channel_valid(pattern, len - 1));
    return push_channel_valid(pattern, len);
}

int push_token_pattern_match(const char *pattern, const char *channel)
{
    size_t plen = strlen(pattern);
    if (plen && pattern[plen - 1] == '*')
        return strncmp(pattern, channel, plen - 1) == 0;
    return strcmp(pattern, channel) == 0;
}

int push_token_rights_valid(const char *rights)
{
    if (!rights || !*rights || strlen(rights) > 3)
        return 0;
    for (const char *p = rights; *p; p++)
        if (!strchr("spl", *p) || strchr(p + 1, *p))
            return 0;
    return 1;
}

/* ---- signing ---------------------------------------------------------------- */

/* HMAC-SHA256(secret, data).  0 or -1. */
static int s_hmac(const void *secret, size_t secret_len, const char *data, size_t len,
                  unsigned char mac[PUSH_TOKEN_SIG_LEN])
{
    unsigned int maclen = 0;
    if (secret_len > (size_t)INT32_MAX
        || !HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)data, len,
                 mac, &maclen)
        || maclen != PUSH_TOKEN_SIG_LEN)
        return -1;
    return 0;
}

static int s_whole_seconds(const cJSON *n, int64_t *out)
{
    if (!cJSON_IsNumber(n) || !(n->valuedouble >= 0) || n->valuedouble > MAX_SECONDS
        || (double)(int64_t)n->valuedouble != n->valuedouble)
        return -1;
    *out = (int64_t)n->valuedouble;
    return 0;
}

/* The payload JSON of a token whose signature is good. */
static push_token_result s_parse_payload(const char *json, size_t len, push_token_claims *out)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    push_token_result rc = PUSH_TOKEN_MALFORMED;
    if (!cJSON_IsObject(root))
        goto done;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(root, "ch");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "exp");
    const cJSON *iat = cJSON_GetObjectItemCaseSensitive(root, "iat");
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(root, "sub");
    if (s_whole_seconds(exp, &out->exp) < 0 || (iat && s_whole_seconds(iat, &out->iat) < 0))
        goto done;
    if (!cJSON_IsString(r) || !push_token_rights_valid(r->valuestring))
        goto done;
    strcpy(out->rights, r->valuestring);
    if (sub) {
        if (!cJSON_IsString(sub)
            || !push_identity_valid(sub->valuestring, strlen(sub->valuestring)))
            goto done;
        strcpy(out->sub, sub->valuestring);
    }
    int n = cJSON_IsArray(ch) ? cJSON_GetArraySize(ch) : 0;
    if (n < 1 || n > PUSH_TOKEN_MAX_CHANNELS)
        goto done;
    if (!(out->ch = calloc((size_t)n, sizeof *out->ch)))
        goto done;
    const cJSON *e;
    cJSON_ArrayForEach(e, ch) {
        if (!cJSON_IsString(e)
            || !push_token_pattern_valid(e->valuestring, strlen(e->valuestring))
            || !(out->ch[out->nch] = strdup(e->valuestring)))
            goto done;
        out->nch++;
    }
    rc = PUSH_TOKEN_OK;
done:
    cJSON_Delete(root);
    return rc;
}

void push_token_claims_free(push_token_claims *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->nch; i++)
        free(c->ch[i]);
    free(c->ch);
    memset(c, 0, sizeof *c);
}

push_token_result push_token_decode(const void *secret, size_t secret_len, const char *token,
                                    int64_t now, push_token_claims *out)
{
    memset(out, 0, sizeof *out);
    if (!token || !*token)
        return PUSH_TOKEN_MISSING;
    size_t len = strnlen(token, PUSH_TOKEN_MAX + 1);
    if (len > PUSH_TOKEN_MAX || strncmp(token, VERSION_PREFIX, VERSION_PREFIX_LEN) != 0)
        return PUSH_TOKEN_MALFORMED;
    const char *payload = token + VERSION_PREFIX_LEN;
    const char *dot = strchr(payload, '.');
    if (!dot || dot == payload || strchr(dot + 1, '.'))
        return PUSH_TOKEN_MALFORMED;
    size_t plen = (size_t)(dot - payload);
    const char *sig64 = dot + 1;
    size_t slen = len - (size_t)(sig64 - token);

    unsigned char sig[PUSH_TOKEN_MAX], mac[PUSH_TOKEN_SIG_LEN];
    size_t siglen = 0;
    if (push_b64url_decode(sig64, slen, sig, &siglen) < 0 || siglen != PUSH_TOKEN_SIG_LEN)
        return PUSH_TOKEN_MALFORMED;
    unsigned char *json = malloc(plen * 3 / 4 + 1);
    size_t jlen = 0;
    if (!json)
        return PUSH_TOKEN_MALFORMED;
    push_token_result rc;
    if (push_b64url_decode(payload, plen, json, &jlen) < 0)
        rc = PUSH_TOKEN_MALFORMED;
    else if (s_hmac(secret, secret_len, token, (size_t)(dot - token), mac) < 0
             || CRYPTO_memcmp(mac, sig, PUSH_TOKEN_SIG_LEN) != 0)
        rc = PUSH_TOKEN_BAD_SIGNATURE;
    else if ((rc = s_parse_payload((const char *)json, jlen, out)) == PUSH_TOKEN_OK
             && now >= out->exp)
        rc = PUSH_TOKEN_EXPIRED;
    free(json);
    if (rc != PUSH_TOKEN_OK)
        push_token_claims_free(out);
    return rc;
}

int push_token_allows(const push_token_claims *c, const char *channel, int right)
{
    if (!c || !channel || !right || !strchr(c->rights, right))
        return 0;
    for (int i = 0; i < c->nch; i++)
        if (push_token_pattern_match(c->ch[i], channel))
            return 1;
    return 0;
}

push_token_result push_token_verify(const void *secret, size_t secret_len, const char *token,
                                    int64_t now, const char *channel, int right,
                                    char *identity)
{
    push_token_claims c;
    push_token_result rc = push_token_decode(secret, secret_len, token, now, &c);
    if (rc == PUSH_TOKEN_OK && !push_token_allows(&c, channel, right))
        rc = PUSH_TOKEN_NO_RIGHT;
    if (identity)
        strcpy(identity, c.sub);      /* "" unless the token was decoded */
    push_token_claims_free(&c);
    return rc;
}

char *push_token_mint(const void *secret, size_t secret_len, const char *sub,
                      const char *const *channels, int nch, const char *rights,
                      int64_t iat, int64_t exp)
{
    if (!secret || nch < 1 || nch > PUSH_TOKEN_MAX_CHANNELS || !push_token_rights_valid(rights)
        || (sub && !push_identity_valid(sub, strlen(sub))) || exp < 0 || iat < 0
        || (double)exp > MAX_SECONDS || (double)iat > MAX_SECONDS) {
        errno = EINVAL;
        return NULL;
    }
    for (int i = 0; i < nch; i++)
        if (!channels[i] || !push_token_pattern_valid(channels[i], strlen(channels[i]))) {
            errno = EINVAL;
            return NULL;
        }
    cJSON *root = cJSON_CreateObject(), *arr = NULL;
    int ok = root != NULL;
    if (ok && sub)
        ok = cJSON_AddStringToObject(root, "sub", sub) != NULL;
    ok = ok && (arr = cJSON_AddArrayToObject(root, "ch")) != NULL;
    for (int i = 0; ok && i < nch; i++) {
        cJSON *s = cJSON_CreateString(channels[i]);
        ok = s && cJSON_AddItemToArray(arr, s);
        if (!ok)
            cJSON_Delete(s);
    }
    /* The times go in as exact decimal integers: cJSON prints a number
     * with 15 significant digits when that reads back within DBL_EPSILON,
     * which moved times above 10^15 by a second or two (fuzz_token). */
    char iat_s[24], exp_s[24];
    snprintf(iat_s, sizeof iat_s, "%" PRId64, iat);
    snprintf(exp_s, sizeof exp_s, "%" PRId64, exp);
    ok = ok && cJSON_AddStringToObject(root, "r", rights) != NULL
         && (!iat || cJSON_AddRawToObject(root, "iat", iat_s) != NULL)
         && cJSON_AddRawToObject(root, "exp", exp_s) != NULL;
    char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) {
        errno = ENOMEM;
        return NULL;
    }
    size_t jlen = strlen(json);
    size_t total = VERSION_PREFIX_LEN + push_b64url_len(jlen) + 1
                 + push_b64url_len(PUSH_TOKEN_SIG_LEN);
    if (total > PUSH_TOKEN_MAX) {
        free(json);
        errno = EINVAL;
        return NULL;
    }
    char *tok = malloc(total + 1);
    if (!tok) {
        free(json);
        errno = ENOMEM;
        return NULL;
    }
    memcpy(tok, VERSION_PREFIX, VERSION_PREFIX_LEN);
    size_t n = VERSION_PREFIX_LEN + push_b64url_encode(tok + VERSION_PREFIX_LEN, json, jlen);
    free(json);
    unsigned char mac[PUSH_TOKEN_SIG_LEN];
    if (s_hmac(secret, secret_len, tok, n, mac) < 0) {
        free(tok);
        errno = EINVAL;
        return NULL;
    }
    tok[n++] = '.';
    push_b64url_encode(tok + n, mac, sizeof mac);
    return tok;
}

/* ---- the secret ---------------------------------------------------------------- */


int push_token_secret_load(const char *path, unsigned char *buf, size_t *len,
                           int *world_readable, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return push_errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return push_errf(err, errlen, "%s is not a regular file", path);
    }
    if (st.st_size > PUSH_TOKEN_SECRET_MAX) {
        close(fd);
        return push_errf(err, errlen, "%s is larger than %d bytes", path, PUSH_TOKEN_SECRET_MAX);
    }
    size_t n = 0;
    while (n < PUSH_TOKEN_SECRET_MAX) {
        ssize_t got = read(fd, buf + n, PUSH_TOKEN_SECRET_MAX - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            close(fd);
            return push_errf(err, errlen, "cannot read %s: %s", path, strerror(e));
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n < PUSH_TOKEN_SECRET_MIN)
        return push_errf(err, errlen, "%s holds %zu bytes of secret; at least %d are needed "
                     "(e.g. openssl rand -hex 32 > %s)", path, n, PUSH_TOKEN_SECRET_MIN, path);
    *len = n;
    if (world_readable)
        *world_readable = (st.st_mode & S_IROTH) != 0;
    return 0;
}
