/*
 * fuzz_token.c — signed channel tokens (proto/push_token.c): the verifier
 * mod_push runs on every token a browser sends, minting, and base64url.
 *
 * Input: a mode byte, then the rest (R).  The secret is fixed (SECRET), the
 * clock is NOW.  mode & 3 picks what R is:
 *
 *   0  a token string, as a client sends it (a NUL-terminated exact-size
 *      copy of R: an embedded NUL ends it, as it would in a header or a
 *      query string).  push_token_decode / push_token_verify must not
 *      crash, and every result must be consistent (below).
 *   1  a payload: R is signed here as "v1.<b64url(R)>.<b64url(HMAC)>" so
 *      that the payload parser, which only runs behind a good signature,
 *      sees arbitrary JSON.  The result must never be BAD_SIGNATURE; an
 *      accepted token is re-minted from its claims and must verify to the
 *      same claims (round trip through the canonical form).
 *   2  minting arguments: sub, channels, rights, iat, exp cut from R (see
 *      s_mint_mode).  push_token_mint must refuse exactly the invalid
 *      arguments (reference checks here); a minted token is at most
 *      PUSH_TOKEN_MAX bytes, verifies to the same claims before exp, is
 *      EXPIRED at exp, BAD_SIGNATURE under another secret, and no single
 *      changed, dropped or appended byte is ever accepted.
 *   3  base64url: encode(R) decodes back to R; when R decodes, encoding the
 *      result gives R again (the strict decoder accepts one spelling per
 *      value).
 *
 * Bits 2..3 of the mode byte pick the right that verify asks for (s, p, l,
 * or the invalid letter 'x'); bit 4 asks for the channel "news" instead of
 * the token's first channel (modes 0..2).
 *
 * Checked on every decode:
 *  - the result is one of the enum's values; MISSING exactly for an empty
 *    token; anything not starting with "v1." is MALFORMED;
 *  - claims are zeroed (nch 0, ch NULL, sub "") unless the result is OK;
 *    when OK: 1..PUSH_TOKEN_MAX_CHANNELS valid patterns, valid rights,
 *    sub "" or a valid identity, exp > NOW, iat <= 2^53-1;
 *  - push_token_verify == decode + push_token_allows, and its identity
 *    output is the token's sub for OK and NO_RIGHT, "" otherwise;
 *  - push_token_allows agrees with a reference pattern matcher;
 *  - an accepted token is BAD_SIGNATURE under another secret.
 */
#include "fuzz_common.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "push_proto.h"
#include "push_token.h"

#define NOW         ((int64_t)1700000000)
#define MAX_SECONDS ((int64_t)9007199254740991)      /* 2^53 - 1 */

static const char SECRET[] = "fuzz-secret-0123456789abcdef-0123456789";
static const char OTHER[]  = "fuzz-secret-0123456789abcdef-0123456789-other";
#define SLEN (sizeof SECRET - 1)
#define OLEN (sizeof OTHER - 1)

static const char RIGHTS[4] = { PUSH_RIGHT_SUBSCRIBE, PUSH_RIGHT_PUBLISH,
                                PUSH_RIGHT_PRESENCE, 'x' };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* ---- references ------------------------------------------------------------ */

static int ref_match(const char *pattern, const char *channel)
{
    size_t pl = strlen(pattern), cl = strlen(channel);
    if (pl && pattern[pl - 1] == '*')
        return cl >= pl - 1 && memcmp(pattern, channel, pl - 1) == 0;
    return pl == cl && memcmp(pattern, channel, pl) == 0;
}

static int ref_rights(const char *r)
{
    size_t n = strlen(r);
    if (n < 1 || n > 3)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i] != 's' && r[i] != 'p' && r[i] != 'l')
            return 0;
        for (size_t j = i + 1; j < n; j++)
            if (r[i] == r[j])
                return 0;
    }
    return 1;
}

/* push_token.h: a channel name, or 0..PUSH_CHANNEL_MAX-1 channel
 * characters followed by one '*' (so never longer than a channel name). */
static int ref_pattern(const char *p)
{
    size_t n = strlen(p);
    if (n == 1 && p[0] == '*')
        return 1;
    if (n && p[n - 1] == '*')
        return n <= PUSH_CHANNEL_MAX && push_channel_valid(p, n - 1);
    return push_channel_valid(p, n);
}

/* ---- helpers ------------------------------------------------------------------ */

/* A heap copy of exactly len + 1 bytes, NUL-terminated. */
static char *s_dup(const void *p, size_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        abort();
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* "v1.<b64url(payload)>.<b64url(HMAC(secret, "v1." + part))>" */
static char *s_sign(const char *secret, size_t slen, const void *payload, size_t plen)
{
    size_t cap = 3 + push_b64url_len(plen) + 1 + push_b64url_len(PUSH_TOKEN_SIG_LEN) + 1;
    char *tok = malloc(cap);
    if (!tok)
        abort();
    memcpy(tok, "v1.", 3);
    size_t n = 3 + push_b64url_encode(tok + 3, payload, plen);
    unsigned char mac[PUSH_TOKEN_SIG_LEN];
    unsigned int maclen = 0;
    FUZZ_CHECK(HMAC(EVP_sha256(), secret, (int)slen, (const unsigned char *)tok, n, mac,
                    &maclen) != NULL && maclen == PUSH_TOKEN_SIG_LEN);
    tok[n++] = '.';
    n += push_b64url_encode(tok + n, mac, sizeof mac);
    FUZZ_CHECK(n + 1 == cap);
    return tok;
}

static void s_check_zero(const push_token_claims *c)
{
    FUZZ_CHECK(c->nch == 0 && c->ch == NULL && c->sub[0] == '\0' && c->rights[0] == '\0'
               && c->exp == 0 && c->iat == 0);
}

static void s_check_claims(const push_token_claims *c)
{
    FUZZ_CHECK(c->nch >= 1 && c->nch <= PUSH_TOKEN_MAX_CHANNELS && c->ch != NULL);
    for (int i = 0; i < c->nch; i++) {
        FUZZ_CHECK(c->ch[i] != NULL);
        FUZZ_CHECK(ref_pattern(c->ch[i]));
        FUZZ_CHECK(push_token_pattern_valid(c->ch[i], strlen(c->ch[i])));
    }
    FUZZ_CHECK(ref_rights(c->rights) && push_token_rights_valid(c->rights));
    FUZZ_CHECK(memchr(c->sub, '\0', sizeof c->sub) != NULL);
    FUZZ_CHECK(c->sub[0] == '\0' || push_identity_valid(c->sub, strlen(c->sub)));
    FUZZ_CHECK(c->exp > NOW && c->exp <= MAX_SECONDS);
    FUZZ_CHECK(c->iat >= 0 && c->iat <= MAX_SECONDS);
}

/* push_token_allows against the reference, for the channel asked and for
 * every claimed channel name (patterns: their prefix plus "x"). */
static void s_check_allows(const push_token_claims *c, const char *channel)
{
    for (int r = 0; r < 4; r++) {
        int right = RIGHTS[r];
        int has = right != 'x' && strchr(c->rights, right) != NULL;
        int any = 0;
        for (int i = 0; i < c->nch; i++)
            any |= ref_match(c->ch[i], channel);
        FUZZ_CHECK(push_token_allows(c, channel, right) == (has && any));
        for (int i = 0; i < c->nch; i++) {
            size_t n = strlen(c->ch[i]);
            char name[PUSH_CHANNEL_MAX + 2];
            FUZZ_CHECK(n <= PUSH_CHANNEL_MAX);
            memcpy(name, c->ch[i], n + 1);
            if (n && name[n - 1] == '*') {
                name[n - 1] = 'x';        /* "room:*" -> "room:x", "*" -> "x" */
            }
            FUZZ_CHECK(push_token_allows(c, name, right) == has);
        }
    }
    FUZZ_CHECK(!push_token_allows(c, channel, 0));
    FUZZ_CHECK(!push_token_allows(c, NULL, PUSH_RIGHT_SUBSCRIBE));
}

static int s_same_claims(const push_token_claims *a, const push_token_claims *b)
{
    if (strcmp(a->sub, b->sub) != 0 || a->exp != b->exp || a->iat != b->iat
        || strcmp(a->rights, b->rights) != 0 || a->nch != b->nch)
        return 0;
    for (int i = 0; i < a->nch; i++)
        if (strcmp(a->ch[i], b->ch[i]) != 0)
            return 0;
    return 1;
}

/* Decode and verify token; check everything the header promises.  Returns
 * the decode result; *claims is filled (free it) when OK. */
static push_token_result s_verify_all(const char *token, int right, int ask_news,
                                      push_token_claims *claims)
{
    push_token_result rc = push_token_decode(SECRET, SLEN, token, NOW, claims);
    FUZZ_CHECK(rc >= PUSH_TOKEN_OK && rc <= PUSH_TOKEN_NO_RIGHT);
    FUZZ_CHECK(rc != PUSH_TOKEN_NO_RIGHT);                 /* decode checks no right */
    FUZZ_CHECK(push_token_result_str(rc) != NULL);
    FUZZ_CHECK((rc == PUSH_TOKEN_MISSING) == (token == NULL || token[0] == '\0'));
    if (token && token[0] && strncmp(token, "v1.", 3) != 0)
        FUZZ_CHECK(rc == PUSH_TOKEN_MALFORMED);
    if (token && strnlen(token, PUSH_TOKEN_MAX + 1) > PUSH_TOKEN_MAX)
        FUZZ_CHECK(rc == PUSH_TOKEN_MALFORMED);

    const char *channel = "news";
    if (rc == PUSH_TOKEN_OK) {
        s_check_claims(claims);
        if (!ask_news && claims->ch[0][strlen(claims->ch[0]) - 1] != '*')
            channel = claims->ch[0];
        s_check_allows(claims, channel);
    }
    else
        s_check_zero(claims);

    /* verify == decode + allows; the identity output */
    char *ident = malloc(PUSH_IDENTITY_MAX + 1);
    if (!ident)
        abort();
    memset(ident, 'Z', PUSH_IDENTITY_MAX + 1);
    push_token_result vr = push_token_verify(SECRET, SLEN, token, NOW, channel, right, ident);
    push_token_result want = rc;
    if (rc == PUSH_TOKEN_OK && !push_token_allows(claims, channel, right))
        want = PUSH_TOKEN_NO_RIGHT;
    FUZZ_CHECK(vr == want);
    if (rc == PUSH_TOKEN_OK)
        FUZZ_CHECK(strcmp(ident, claims->sub) == 0);
    else
        FUZZ_CHECK(ident[0] == '\0');
    free(ident);
    FUZZ_CHECK(push_token_verify(SECRET, SLEN, token, NOW, channel, right, NULL) == want);

    /* another secret: never accepted; well-formed tokens fail on the signature */
    push_token_claims other;
    push_token_result orc = push_token_decode(OTHER, OLEN, token, NOW, &other);
    if (rc == PUSH_TOKEN_OK || rc == PUSH_TOKEN_EXPIRED)
        FUZZ_CHECK(orc == PUSH_TOKEN_BAD_SIGNATURE);
    else if (rc == PUSH_TOKEN_MISSING)
        FUZZ_CHECK(orc == PUSH_TOKEN_MISSING);
    else if (rc == PUSH_TOKEN_MALFORMED)       /* the form, or a payload behind the signature */
        FUZZ_CHECK(orc == PUSH_TOKEN_MALFORMED || orc == PUSH_TOKEN_BAD_SIGNATURE);
    /* BAD_SIGNATURE: the token may be signed with OTHER (a seed is) */
    if (orc == PUSH_TOKEN_OK)
        push_token_claims_free(&other);
    else
        s_check_zero(&other);
    return rc;
}

/* Mint from claims; NULL only when the token would be too long. */
static char *s_remint(const push_token_claims *c)
{
    errno = 0;
    char *t = push_token_mint(SECRET, SLEN, c->sub[0] ? c->sub : NULL,
                              (const char *const *)c->ch, c->nch, c->rights, c->iat, c->exp);
    if (!t)
        FUZZ_CHECK(errno == EINVAL);
    else
        FUZZ_CHECK(strlen(t) <= PUSH_TOKEN_MAX);
    return t;
}

/* A minted token: same claims back; expired at exp; no single-byte change,
 * truncation or extension is accepted. */
static void s_check_minted(const char *tok, const push_token_claims *want, int right, int ask_news,
                           const uint8_t *mut, size_t mutlen)
{
    push_token_claims c;
    push_token_result rc = s_verify_all(tok, right, ask_news, &c);
    if (want->exp > NOW) {
        FUZZ_CHECK(rc == PUSH_TOKEN_OK);
        FUZZ_CHECK(s_same_claims(&c, want));
    }
    else
        FUZZ_CHECK(rc == PUSH_TOKEN_EXPIRED);
    push_token_claims_free(&c);

    push_token_claims e;
    FUZZ_CHECK(push_token_decode(SECRET, SLEN, tok, want->exp, &e) == PUSH_TOKEN_EXPIRED);
    s_check_zero(&e);
    if (want->exp > 0) {
        FUZZ_CHECK(push_token_decode(SECRET, SLEN, tok, want->exp - 1, &e) == PUSH_TOKEN_OK);
        FUZZ_CHECK(s_same_claims(&e, want));
        push_token_claims_free(&e);
    }

    /* tampering, driven by the rest of the input */
    size_t len = strlen(tok);
    char *t = s_dup(tok, len);
    for (size_t k = 0; k + 1 < mutlen && k < 16 * 3; k += 3) {
        size_t pos = ((size_t)mut[k] << 8 | (k + 1 < mutlen ? mut[k + 1] : 0)) % len;
        uint8_t b = k + 2 < mutlen ? mut[k + 2] : 'A';
        if (b == 0 || (char)b == t[pos])
            b = t[pos] == 'A' ? 'B' : 'A';
        char saved = t[pos];
        t[pos] = (char)b;
        push_token_claims x;
        FUZZ_CHECK(push_token_decode(SECRET, SLEN, t, 0, &x) != PUSH_TOKEN_OK);
        s_check_zero(&x);
        t[pos] = saved;
    }
    for (size_t cut = 1; cut <= 4 && cut < len; cut++) {
        char *p = s_dup(tok, len - cut);
        push_token_claims x;
        FUZZ_CHECK(push_token_decode(SECRET, SLEN, p, 0, &x) != PUSH_TOKEN_OK);
        free(p);
    }
    char *longer = malloc(len + 2);
    if (!longer)
        abort();
    memcpy(longer, tok, len);
    longer[len] = 'A';
    longer[len + 1] = '\0';
    push_token_claims x;
    FUZZ_CHECK(push_token_decode(SECRET, SLEN, longer, 0, &x) != PUSH_TOKEN_OK);
    free(longer);
    free(t);
}

/* ---- modes ------------------------------------------------------------------------ */

static void s_raw_mode(const uint8_t *data, size_t size, int right, int ask_news)
{
    char *tok = s_dup(data, size);
    push_token_claims c;
    push_token_result rc = s_verify_all(tok, right, ask_news, &c);
    if (rc == PUSH_TOKEN_OK)
        push_token_claims_free(&c);
    free(tok);
    /* NULL is "missing" too */
    FUZZ_CHECK(push_token_decode(SECRET, SLEN, NULL, NOW, &c) == PUSH_TOKEN_MISSING);
    s_check_zero(&c);
}

static void s_payload_mode(const uint8_t *data, size_t size, int right, int ask_news)
{
    char *tok = s_sign(SECRET, SLEN, data, size);
    push_token_claims c;
    push_token_result rc = s_verify_all(tok, right, ask_news, &c);
    size_t len = strlen(tok);
    if (len <= PUSH_TOKEN_MAX)
        FUZZ_CHECK(rc != PUSH_TOKEN_BAD_SIGNATURE && rc != PUSH_TOKEN_MISSING);
    else
        FUZZ_CHECK(rc == PUSH_TOKEN_MALFORMED);
    if (rc == PUSH_TOKEN_OK) {
        char *again = s_remint(&c);
        if (!again)
            FUZZ_CHECK(len > PUSH_TOKEN_MAX - 64);
        else {
            s_check_minted(again, &c, right, ask_news, data, size < 6 ? size : 6);
            free(again);
        }
        push_token_claims_free(&c);
    }
    free(tok);
}

/* R: [sub_len] sub [nch] then nch x ([len] channel) [rights_len] rights
 *    [8 bytes iat] [8 bytes exp] [mutations...]; lengths are one byte.
 * iat and exp are little-endian, folded so that most are near NOW. */
static size_t s_take(fuzz_in *in, char *out, size_t cap)
{
    size_t n = fuzz_u8(in);
    if (n > in->left)
        n = in->left;
    if (n > cap)
        n = cap;
    memcpy(out, in->p, n);
    out[n] = '\0';
    in->p += n;
    in->left -= n;
    return n;
}

static int64_t s_time(fuzz_in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)fuzz_u8(in) << (8 * i);
    switch (v >> 62) {
    case 0:  return NOW - 1000 + (int64_t)(v % 100000);           /* around now */
    case 1:  return (int64_t)(v & ((1ull << 54) - 1));            /* around 2^53 */
    case 2:  return -(int64_t)(v & 0xffff);                       /* negative */
    default: return (int64_t)(v & 0x7fffffffffffffffull);         /* anything */
    }
}

static void s_mint_mode(const uint8_t *data, size_t size, int right, int ask_news)
{
    fuzz_in in = { data, size };
    char sub[256], rights[256];
    static char chbuf[PUSH_TOKEN_MAX_CHANNELS + 2][256];
    const char *chans[PUSH_TOKEN_MAX_CHANNELS + 2];
    size_t sublen = s_take(&in, sub, 255);
    int nch = fuzz_u8(&in) % (PUSH_TOKEN_MAX_CHANNELS + 2);     /* 0..65: one too many */
    for (int i = 0; i < nch; i++) {
        s_take(&in, chbuf[i], 255);
        chans[i] = chbuf[i];
    }
    s_take(&in, rights, 255);
    int64_t iat = s_time(&in), exp = s_time(&in);

    /* the reference: which arguments are valid */
    /* what mint sees is the C string: an embedded NUL ends it */
    int sub_ok = sublen == 0 || push_identity_valid(sub, strlen(sub));
    int valid = sub_ok && nch >= 1 && nch <= PUSH_TOKEN_MAX_CHANNELS && ref_rights(rights)
                && exp >= 0 && exp <= MAX_SECONDS && iat >= 0 && iat <= MAX_SECONDS;
    for (int i = 0; i < nch; i++)
        valid = valid && ref_pattern(chans[i]);

    errno = 0;
    char *tok = push_token_mint(SECRET, SLEN, sublen ? sub : NULL, chans, nch, rights, iat, exp);
    if (!valid) {
        FUZZ_CHECK(tok == NULL && errno == EINVAL);
        return;
    }
    if (!tok) {
        /* only a token that would be too long is refused */
        size_t json = 100 + sublen * 2 + strlen(rights);
        for (int i = 0; i < nch; i++)
            json += strlen(chans[i]) + 3;
        FUZZ_CHECK(errno == EINVAL && 3 + push_b64url_len(json) + 1 + 43 > PUSH_TOKEN_MAX);
        return;
    }
    FUZZ_CHECK(strlen(tok) <= PUSH_TOKEN_MAX && strncmp(tok, "v1.", 3) == 0);
    push_token_claims want;
    memset(&want, 0, sizeof want);
    if (sublen)
        memcpy(want.sub, sub, strlen(sub) + 1);
    want.exp = exp;
    want.iat = iat;
    memcpy(want.rights, rights, strlen(rights) + 1);
    want.nch = nch;
    want.ch = (char **)chans;
    s_check_minted(tok, &want, right, ask_news, in.p, in.left);
    free(tok);
}

static void s_b64_mode(const uint8_t *data, size_t size)
{
    size_t elen = push_b64url_len(size);
    char *enc = malloc(elen + 1);
    if (!enc)
        abort();
    FUZZ_CHECK(push_b64url_encode(enc, data, size) == elen && enc[elen] == '\0');
    for (size_t i = 0; i < elen; i++)
        FUZZ_CHECK(enc[i] != '=' && enc[i] != '+' && enc[i] != '/' && enc[i] != '.');
    size_t dlen = 0;
    /* out needs len * 3 / 4 + 1 bytes: give exactly that */
    unsigned char *exact = malloc(elen * 3 / 4 + 1);
    if (!exact)
        abort();
    FUZZ_CHECK(push_b64url_decode(enc, elen, exact, &dlen) == 0);
    FUZZ_CHECK(dlen == size && memcmp(exact, data, size) == 0);
    free(exact);

    /* the input as base64url text */
    char *text = s_dup(data, size);
    unsigned char *out = malloc(size * 3 / 4 + 1);
    if (!out)
        abort();
    if (push_b64url_decode(text, size, out, &dlen) == 0) {
        FUZZ_CHECK(size % 4 != 1 && dlen == size * 3 / 4);
        char *re = malloc(push_b64url_len(dlen) + 1);
        if (!re)
            abort();
        FUZZ_CHECK(push_b64url_encode(re, out, dlen) == size);
        FUZZ_CHECK(memcmp(re, text, size) == 0);
        free(re);
    }
    free(out);
    free(text);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    int right = RIGHTS[(mode >> 2) & 3];
    int ask_news = (mode >> 4) & 1;
    data++;
    size--;
    switch (mode & 3) {
    case 0: s_raw_mode(data, size, right, ask_news); break;
    case 1: s_payload_mode(data, size, right, ask_news); break;
    case 2: s_mint_mode(data, size, right, ask_news); break;
    case 3: s_b64_mode(data, size); break;
    }
    return 0;
}
