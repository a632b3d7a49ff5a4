/*
 * test_token.c — unit tests for proto/push_token.c: base64url (known
 * vectors, the URL alphabet, strict decoding), minting and verifying (round
 * trip, a vector computed independently with Python's hmac module), every
 * failure kind, the order of the checks, the expiry boundary, channel
 * patterns, and loading the secret file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <unistd.h>

#include "push_token.h"
#include "pushctl_args.h"

#define SECRET_TEXT "0123456789abcdef0123456789abcdef"
static const char SECRET[] = SECRET_TEXT;   /* 32 bytes */
static const char OTHER[]  = "0123456789abcdef0123456789abcdeF";
#define SLEN (sizeof SECRET - 1)
#define NOW  ((int64_t)1700000000)

/* ---- helpers ----------------------------------------------------------------- */

/* A token over any payload text, signed with secret: tests of payloads
 * that push_token_mint would never produce. */
static char *s_sign(const char *secret, const char *payload)
{
    size_t plen = strlen(payload);
    char *tok = malloc(3 + push_b64url_len(plen) + 1 + push_b64url_len(32) + 1);
    assert_non_null(tok);
    memcpy(tok, "v1.", 3);
    size_t n = 3 + push_b64url_encode(tok + 3, payload, plen);
    unsigned char mac[32];
    unsigned int maclen = 0;
    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)tok, n,
                         mac, &maclen));
    tok[n++] = '.';
    push_b64url_encode(tok + n, mac, maclen);
    return tok;
}

static char *s_mint(const char *sub, const char *ch1, const char *ch2, const char *rights,
                    int64_t exp)
{
    const char *chs[2] = { ch1, ch2 };
    char *t = push_token_mint(SECRET, SLEN, sub, chs, ch2 ? 2 : 1, rights, NOW, exp);
    assert_non_null(t);
    return t;
}

static push_token_result s_verify(const char *tok, const char *channel, int right)
{
    return push_token_verify(SECRET, SLEN, tok, NOW, channel, right, NULL);
}

/* ---- base64url -------------------------------------------------------------------- */

static void test_b64url_vectors(void **state)
{
    (void)state;
    static const struct { const char *in, *out; } v[] = {   /* RFC 4648 §10, unpadded */
        { "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" }, { "foobar", "Zm9vYmFy" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[32];
        unsigned char back[32];
        size_t blen = 99;
        size_t n = push_b64url_encode(out, v[i].in, strlen(v[i].in));
        assert_int_equal(n, strlen(v[i].out));
        assert_int_equal(n, push_b64url_len(strlen(v[i].in)));
        assert_string_equal(out, v[i].out);
        assert_int_equal(push_b64url_decode(out, n, back, &blen), 0);
        assert_int_equal(blen, strlen(v[i].in));
        assert_memory_equal(back, v[i].in, blen);
    }
    /* the URL alphabet: - and _ where base64 has + and / */
    const unsigned char hi[] = { 0xfb, 0xff, 0xbf };
    char out[8];
    push_b64url_encode(out, hi, 3);
    assert_string_equal(out, "-_-_");
}

static void test_b64url_round_trip_every_length(void **state)
{
    (void)state;
    unsigned char in[70], back[70];
    char enc[100];
    srand(7);
    for (size_t len = 0; len <= sizeof in; len++) {
        for (size_t i = 0; i < len; i++)
            in[i] = (unsigned char)rand();
        size_t n = push_b64url_encode(enc, in, len), blen = 0;
        assert_int_equal(n, push_b64url_len(len));
        assert_int_not_equal(n % 4, 1);
        assert_null(strpbrk(enc, "+/="));
        assert_int_equal(push_b64url_decode(enc, n, back, &blen), 0);
        assert_int_equal(blen, len);
        assert_memory_equal(back, in, len);
    }
}

static void test_b64url_strict(void **state)
{
    (void)state;
    unsigned char out[16];
    size_t n;
    static const char *const bad[] = {
        "Zg==",     /* padding */
        "Zm9v+A",   /* standard alphabet */
        "Zm9v/A",
        "Zm9 v",    /* space */
        "Z",        /* 4k+1 characters cannot be */
        "Zm9vY",
        "Zh",       /* non-zero trailing bits: "f" is only Zg */
        "Zm9",      /* "fo" is Zm8 */
        "Zm.v",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (push_b64url_decode(bad[i], strlen(bad[i]), out, &n) == 0)
            fail_msg("'%s' decoded", bad[i]);
    assert_int_equal(push_b64url_decode("", 0, out, &n), 0);
    assert_int_equal(n, 0);
}

/* ---- minting and verifying ---------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    char *t = s_mint("alice", "room:*", "news", "sp", NOW + 3600);
    assert_true(strlen(t) < PUSH_TOKEN_MAX);
    assert_int_equal(strncmp(t, "v1.", 3), 0);
    assert_null(strpbrk(t, "+/= "));

    push_token_claims c;
    assert_int_equal(push_token_decode(SECRET, SLEN, t, NOW, &c), PUSH_TOKEN_OK);
    assert_string_equal(c.sub, "alice");
    assert_string_equal(c.rights, "sp");
    assert_int_equal(c.exp, NOW + 3600);
    assert_int_equal(c.iat, NOW);
    assert_int_equal(c.nch, 2);
    assert_string_equal(c.ch[0], "room:*");
    assert_string_equal(c.ch[1], "news");
    assert_true(push_token_allows(&c, "room:1", 's'));
    assert_true(push_token_allows(&c, "news", 'p'));
    assert_false(push_token_allows(&c, "news", 'l'));
    assert_false(push_token_allows(&c, "sport", 's'));
    push_token_claims_free(&c);
    assert_int_equal(c.nch, 0);
    assert_null(c.ch);

    char id[PUSH_IDENTITY_MAX + 1] = "junk";
    assert_int_equal(push_token_verify(SECRET, SLEN, t, NOW, "room:lobby", 's', id),
                     PUSH_TOKEN_OK);
    assert_string_equal(id, "alice");
    free(t);

    /* no sub, no iat */
    const char *all[] = { "*" };
    t = push_token_mint(SECRET, SLEN, NULL, all, 1, "l", 0, NOW + 1);
    assert_non_null(t);
    assert_int_equal(push_token_decode(SECRET, SLEN, t, NOW, &c), PUSH_TOKEN_OK);
    assert_string_equal(c.sub, "");
    assert_int_equal(c.iat, 0);
    assert_true(push_token_allows(&c, "anything", 'l'));
    push_token_claims_free(&c);
    assert_int_equal(push_token_verify(SECRET, SLEN, t, NOW, "x", 'l', id), PUSH_TOKEN_OK);
    assert_string_equal(id, "");
    free(t);
}

/* Computed with Python: hmac.new(secret, "v1." + b64url(payload), sha256). */
static void test_independent_vector(void **state)
{
    (void)state;
    static const char expect[] =
        "v1.eyJzdWIiOiJhbGljZSIsImNoIjpbInJvb206KiIsIm5ld3MiXSwiciI6InNwIiwiaWF0IjoxNzAwMDAw"
        "MDAwLCJleHAiOjE3MDAwMDM2MDB9.Z6OHO84nGD-SnuZ6rY9pWywvHCgBxSda2oJSl2vC6L0";
    char *t = s_mint("alice", "room:*", "news", "sp", 1700003600);
    assert_string_equal(t, expect);
    free(t);
    assert_int_equal(s_verify(expect, "news", 'p'), PUSH_TOKEN_OK);
}

static void test_missing(void **state)
{
    (void)state;
    char id[PUSH_IDENTITY_MAX + 1] = "junk";
    assert_int_equal(push_token_verify(SECRET, SLEN, NULL, NOW, "a", 's', id),
                     PUSH_TOKEN_MISSING);
    assert_string_equal(id, "");
    assert_int_equal(s_verify("", "a", 's'), PUSH_TOKEN_MISSING);
}

static void test_malformed_form(void **state)
{
    (void)state;
    char *good = s_mint(NULL, "a", NULL, "s", NOW + 60);
    const char *payload = good + 3, *sig = strchr(payload, '.') + 1;
    char buf[PUSH_TOKEN_MAX + 100];
    const char *const cases[] = {
        "abc", "v1", "v1.", "v1..", "v2.eyJ9.AAAA", "V1.eyJ9.AAAA", ".v1.a.b",
        "v1.eyJ9", "v1..AAAA", "v1.eyJ9.", "v1.a.b.c",
        "v1.eyJ9.AAAA",          /* signature of 3 bytes */
        "v1.e$J9.AAAA",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (s_verify(cases[i], "a", 's') != PUSH_TOKEN_MALFORMED)
            fail_msg("'%s' is not malformed?", cases[i]);

    /* a good payload with a signature of the wrong length, or with padding */
    snprintf(buf, sizeof buf, "v1.%.*s.%sAA", (int)(sig - 1 - payload), payload, sig);
    assert_int_equal(s_verify(buf, "a", 's'), PUSH_TOKEN_MALFORMED);
    snprintf(buf, sizeof buf, "%s=", good);
    assert_int_equal(s_verify(buf, "a", 's'), PUSH_TOKEN_MALFORMED);
    /* the standard alphabet in the payload */
    snprintf(buf, sizeof buf, "%s", good);
    buf[5] = '+';
    assert_int_equal(s_verify(buf, "a", 's'), PUSH_TOKEN_MALFORMED);
    /* longer than PUSH_TOKEN_MAX: refused before anything else */
    memset(buf, 'A', sizeof buf);
    memcpy(buf, "v1.", 3);
    buf[PUSH_TOKEN_MAX / 2] = '.';
    buf[PUSH_TOKEN_MAX + 1] = '\0';
    assert_int_equal(s_verify(buf, "a", 's'), PUSH_TOKEN_MALFORMED);
    free(good);
}

/* Signed with the right secret, but not a payload we accept. */
static void test_malformed_payload(void **state)
{
    (void)state;
    const char *const bad[] = {
        "", "not json", "[]", "\"str\"", "{", "{\"ch\":[\"a\"],\"r\":\"s\"}",  /* no exp */
        "{\"ch\":[\"a\"],\"r\":\"s\",\"exp\":\"1800000000\"}",
        "{\"ch\":[\"a\"],\"r\":\"s\",\"exp\":-1}",
        "{\"ch\":[\"a\"],\"r\":\"s\",\"exp\":1800000000.5}",
        "{\"ch\":[\"a\"],\"r\":\"s\",\"exp\":1e300}",
        "{\"ch\":[\"a\"],\"r\":\"s\",\"exp\":1800000000,\"iat\":\"x\"}",
        "{\"r\":\"s\",\"exp\":1800000000}",                                   /* no ch */
        "{\"ch\":[],\"r\":\"s\",\"exp\":1800000000}",
        "{\"ch\":\"a\",\"r\":\"s\",\"exp\":1800000000}",
        "{\"ch\":[1],\"r\":\"s\",\"exp\":1800000000}",
        "{\"ch\":[\"a b\"],\"r\":\"s\",\"exp\":1800000000}",
        "{\"ch\":[\"a*b\"],\"r\":\"s\",\"exp\":1800000000}",
        "{\"ch\":[\"**\"],\"r\":\"s\",\"exp\":1800000000}",
        "{\"ch\":[\"\"],\"r\":\"s\",\"exp\":1800000000}",
        "{\"ch\":[\"a\"],\"exp\":1800000000}",                                /* no r */
        "{\"ch\":[\"a\"],\"r\":\"\",\"exp\":1800000000}",
        "{\"ch\":[\"a\"],\"r\":\"x\",\"exp\":1800000000}",
        "{\"ch\":[\"a\"],\"r\":\"ss\",\"exp\":1800000000}",
        "{\"ch\":[\"a\"],\"r\":\"splx\",\"exp\":1800000000}",
        "{\"ch\":[\"a\"],\"r\":[\"s\"],\"exp\":1800000000}",
        "{\"ch\":[\"a\"],\"r\":\"s\",\"exp\":1800000000,\"sub\":\"\"}",
        "{\"ch\":[\"a\"],\"r\":\"s\",\"exp\":1800000000,\"sub\":7}",
        "{\"ch\":[\"a\"],\"r\":\"s\",\"exp\":1800000000,\"sub\":\"a\\nb\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *t = s_sign(SECRET, bad[i]);
        push_token_claims c;
        if (push_token_decode(SECRET, SLEN, t, NOW, &c) != PUSH_TOKEN_MALFORMED)
            fail_msg("payload %s is accepted", bad[i]);
        assert_int_equal(c.nch, 0);
        assert_null(c.ch);
        free(t);
    }
    /* too many channels; a sub longer than PUSH_IDENTITY_MAX */
    char json[8192];
    int n = snprintf(json, sizeof json, "{\"r\":\"s\",\"exp\":1800000000,\"ch\":[");
    for (int i = 0; i <= PUSH_TOKEN_MAX_CHANNELS; i++)
        n += snprintf(json + n, sizeof json - (size_t)n, "%s\"c%d\"", i ? "," : "", i);
    snprintf(json + n, sizeof json - (size_t)n, "]}");
    char *t = s_sign(SECRET, json);
    assert_int_equal(s_verify(t, "c1", 's'), PUSH_TOKEN_MALFORMED);
    free(t);
    char longsub[PUSH_IDENTITY_MAX + 2];
    memset(longsub, 'x', sizeof longsub - 1);
    longsub[sizeof longsub - 1] = '\0';
    snprintf(json, sizeof json, "{\"ch\":[\"a\"],\"r\":\"s\",\"exp\":1800000000,\"sub\":\"%s\"}",
             longsub);
    t = s_sign(SECRET, json);
    assert_int_equal(s_verify(t, "a", 's'), PUSH_TOKEN_MALFORMED);
    free(t);
    /* exactly PUSH_IDENTITY_MAX is fine, unknown members are ignored */
    longsub[PUSH_IDENTITY_MAX] = '\0';
    snprintf(json, sizeof json, "{\"ch\":[\"a\"],\"r\":\"s\",\"exp\":1800000000,\"sub\":\"%s\","
             "\"aud\":\"x\",\"nested\":{\"k\":[1,2]}}", longsub);
    t = s_sign(SECRET, json);
    char id[PUSH_IDENTITY_MAX + 1];
    assert_int_equal(push_token_verify(SECRET, SLEN, t, NOW, "a", 's', id), PUSH_TOKEN_OK);
    assert_string_equal(id, longsub);
    free(t);
}

static void test_bad_signature(void **state)
{
    (void)state;
    char *good = s_mint("alice", "a", NULL, "s", NOW + 60);
    char buf[PUSH_TOKEN_MAX];

    /* another secret, or a secret one byte shorter */
    assert_int_equal(push_token_verify(OTHER, SLEN, good, NOW, "a", 's', NULL),
                     PUSH_TOKEN_BAD_SIGNATURE);
    assert_int_equal(push_token_verify(SECRET, SLEN - 1, good, NOW, "a", 's', NULL),
                     PUSH_TOKEN_BAD_SIGNATURE);

    /* a payload granting more (the holder edits "s" into "sp"), old signature */
    char *more = s_mint("alice", "a", NULL, "sp", NOW + 60);
    const char *sig = strrchr(good, '.');
    const char *more_sig = strrchr(more, '.');
    snprintf(buf, sizeof buf, "%.*s%s", (int)(more_sig - more), more, sig);
    assert_int_equal(s_verify(buf, "a", 'p'), PUSH_TOKEN_BAD_SIGNATURE);

    /* the forged signature: a valid encoding of another MAC */
    char *forged = s_sign(OTHER, "{\"ch\":[\"*\"],\"r\":\"spl\",\"exp\":9999999999}");
    assert_int_equal(s_verify(forged, "a", 's'), PUSH_TOKEN_BAD_SIGNATURE);

    /* one payload character changed (still valid base64url) */
    snprintf(buf, sizeof buf, "%s", good);
    buf[8] = buf[8] == 'A' ? 'B' : 'A';
    assert_int_equal(s_verify(buf, "a", 's'), PUSH_TOKEN_BAD_SIGNATURE);

    /* the payload is only parsed once the signature is good: garbage in a
     * forged token is a bad signature, not a malformed payload */
    snprintf(buf, sizeof buf, "v1.bm90IGpzb24%s", sig);
    assert_int_equal(s_verify(buf, "a", 's'), PUSH_TOKEN_BAD_SIGNATURE);

    /* nothing is filled in */
    char id[PUSH_IDENTITY_MAX + 1] = "junk";
    assert_int_equal(push_token_verify(OTHER, SLEN, good, NOW, "a", 's', id),
                     PUSH_TOKEN_BAD_SIGNATURE);
    assert_string_equal(id, "");
    free(good);
    free(more);
    free(forged);
}

static void test_expiry_boundary(void **state)
{
    (void)state;
    char *t = s_mint("bob", "a", NULL, "s", 1000);
    assert_int_equal(push_token_verify(SECRET, SLEN, t, 0, "a", 's', NULL), PUSH_TOKEN_OK);
    assert_int_equal(push_token_verify(SECRET, SLEN, t, 999, "a", 's', NULL), PUSH_TOKEN_OK);
    assert_int_equal(push_token_verify(SECRET, SLEN, t, 1000, "a", 's', NULL),
                     PUSH_TOKEN_EXPIRED);
    assert_int_equal(push_token_verify(SECRET, SLEN, t, 1001, "a", 's', NULL),
                     PUSH_TOKEN_EXPIRED);
    /* expiry is checked before rights: an expired token says so */
    assert_int_equal(push_token_verify(SECRET, SLEN, t, 1000, "zzz", 'p', NULL),
                     PUSH_TOKEN_EXPIRED);
    /* a forged expired token is forged */
    assert_int_equal(push_token_verify(OTHER, SLEN, t, 1000, "a", 's', NULL),
                     PUSH_TOKEN_BAD_SIGNATURE);
    char id[PUSH_IDENTITY_MAX + 1] = "junk";
    assert_int_equal(push_token_verify(SECRET, SLEN, t, 5000, "a", 's', id), PUSH_TOKEN_EXPIRED);
    assert_string_equal(id, "");
    free(t);

    /* times up to 2^53 - 1 survive minting exactly (cJSON used to print
     * 9007199254740991 as 9.00719925474099e+15; found by fuzz_token) */
    static const int64_t big[] = { 9007199254740991, 9007199254740989, 4503599627370497,
                                   1000000000000001 };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        const char *ch = "a";
        t = push_token_mint(SECRET, SLEN, NULL, &ch, 1, "s", big[i] - 1, big[i]);
        assert_non_null(t);
        push_token_claims c;
        assert_int_equal(push_token_decode(SECRET, SLEN, t, big[i] - 1, &c), PUSH_TOKEN_OK);
        assert_true(c.exp == big[i] && c.iat == big[i] - 1);
        push_token_claims_free(&c);
        assert_int_equal(push_token_decode(SECRET, SLEN, t, big[i], &c), PUSH_TOKEN_EXPIRED);
        free(t);
    }
}

static void test_no_right(void **state)
{
    (void)state;
    char *t = s_mint("carol", "news", "room:*", "s", NOW + 60);
    char id[PUSH_IDENTITY_MAX + 1];
    assert_int_equal(s_verify(t, "news", 's'), PUSH_TOKEN_OK);
    assert_int_equal(s_verify(t, "room:9", 's'), PUSH_TOKEN_OK);
    assert_int_equal(s_verify(t, "news", 'p'), PUSH_TOKEN_NO_RIGHT);      /* wrong right */
    assert_int_equal(s_verify(t, "news", 'l'), PUSH_TOKEN_NO_RIGHT);
    assert_int_equal(s_verify(t, "sport", 's'), PUSH_TOKEN_NO_RIGHT);     /* wrong channel */
    assert_int_equal(s_verify(t, "newsroom", 's'), PUSH_TOKEN_NO_RIGHT);
    assert_int_equal(s_verify(t, "room", 's'), PUSH_TOKEN_NO_RIGHT);
    assert_int_equal(s_verify(t, "news", 'x'), PUSH_TOKEN_NO_RIGHT);
    assert_int_equal(s_verify(t, "news", 0), PUSH_TOKEN_NO_RIGHT);
    /* the identity is known even when the right is not granted */
    assert_int_equal(push_token_verify(SECRET, SLEN, t, NOW, "sport", 's', id),
                     PUSH_TOKEN_NO_RIGHT);
    assert_string_equal(id, "carol");
    free(t);
}

static void test_patterns(void **state)
{
    (void)state;
    static const struct { const char *pattern, *channel; int match; } m[] = {
        { "*", "a", 1 }, { "*", "room:1", 1 },
        { "room:*", "room:", 1 }, { "room:*", "room:1", 1 }, { "room:*", "room:1:x", 1 },
        { "room:*", "room", 0 }, { "room:*", "roo", 0 }, { "room:*", "Room:1", 0 },
        { "room:*", "xroom:1", 0 },
        { "news", "news", 1 }, { "news", "news2", 0 }, { "news", "new", 0 },
        { "news", "NEWS", 0 }, { "n*", "n", 1 }, { "n*", "news", 1 }, { "n*", "m", 0 },
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (push_token_pattern_match(m[i].pattern, m[i].channel) != m[i].match)
            fail_msg("'%s' vs '%s': expected %d", m[i].pattern, m[i].channel, m[i].match);

    static const struct { const char *p; int valid; } v[] = {
        { "*", 1 }, { "a", 1 }, { "a*", 1 }, { "room:*", 1 }, { "A-z_.:@~0*", 1 },
        { "", 0 }, { "**", 0 }, { "*a", 0 }, { "a*b", 0 }, { "a b", 0 }, { "a/*", 0 },
        { "a?", 0 },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (push_token_pattern_valid(v[i].p, strlen(v[i].p)) != v[i].valid)
            fail_msg("pattern '%s': expected %d", v[i].p, v[i].valid);
    char p[PUSH_CHANNEL_MAX + 2];
    memset(p, 'c', sizeof p);
    assert_true(push_token_pattern_valid(p, PUSH_CHANNEL_MAX));        /* a full name */
    assert_false(push_token_pattern_valid(p, PUSH_CHANNEL_MAX + 1));
    p[PUSH_CHANNEL_MAX - 1] = '*';
    assert_true(push_token_pattern_valid(p, PUSH_CHANNEL_MAX));        /* 127 + '*' */
    p[PUSH_CHANNEL_MAX] = '*';
    assert_false(push_token_pattern_valid(p, PUSH_CHANNEL_MAX + 1));
    p[PUSH_CHANNEL_MAX - 1] = 'c';                                      /* 128 + '*' */
    assert_false(push_token_pattern_valid(p, PUSH_CHANNEL_MAX + 1));

    assert_true(push_token_rights_valid("s"));
    assert_true(push_token_rights_valid("lps"));
    assert_false(push_token_rights_valid(NULL));
    assert_false(push_token_rights_valid("sps"));
    assert_false(push_token_rights_valid("S"));
}

static void test_mint_refuses_bad_arguments(void **state)
{
    (void)state;
    const char *ok[] = { "a" }, *bad[] = { "a b" }, *null[] = { NULL };
    const char *many[PUSH_TOKEN_MAX_CHANNELS + 1];
    for (int i = 0; i <= PUSH_TOKEN_MAX_CHANNELS; i++)
        many[i] = "c";
#define REFUSED(call) do { errno = 0; assert_null(call); assert_int_equal(errno, EINVAL); } while (0)
    REFUSED(push_token_mint(SECRET, SLEN, NULL, bad, 1, "s", 0, 10));
    REFUSED(push_token_mint(SECRET, SLEN, NULL, null, 1, "s", 0, 10));
    REFUSED(push_token_mint(SECRET, SLEN, NULL, ok, 0, "s", 0, 10));
    REFUSED(push_token_mint(SECRET, SLEN, NULL, many, PUSH_TOKEN_MAX_CHANNELS + 1, "s", 0, 10));
    REFUSED(push_token_mint(SECRET, SLEN, NULL, ok, 1, "", 0, 10));
    REFUSED(push_token_mint(SECRET, SLEN, NULL, ok, 1, "sx", 0, 10));
    REFUSED(push_token_mint(SECRET, SLEN, "", ok, 1, "s", 0, 10));
    REFUSED(push_token_mint(SECRET, SLEN, "a\tb", ok, 1, "s", 0, 10));
    REFUSED(push_token_mint(SECRET, SLEN, NULL, ok, 1, "s", 0, -1));
    REFUSED(push_token_mint(NULL, 0, NULL, ok, 1, "s", 0, 10));
    char *t = push_token_mint(SECRET, SLEN, NULL, many, PUSH_TOKEN_MAX_CHANNELS, "s", 0, 10);
    assert_non_null(t);
    free(t);
    /* a token that would not fit PUSH_TOKEN_MAX */
    static char longch[PUSH_TOKEN_MAX_CHANNELS][PUSH_CHANNEL_MAX + 1];
    const char *longs[PUSH_TOKEN_MAX_CHANNELS];
    for (int i = 0; i < PUSH_TOKEN_MAX_CHANNELS; i++) {
        memset(longch[i], 'a' + i % 26, PUSH_CHANNEL_MAX);
        longs[i] = longch[i];
    }
    REFUSED(push_token_mint(SECRET, SLEN, NULL, longs, PUSH_TOKEN_MAX_CHANNELS, "s", 0, 10));
#undef REFUSED
}

static void test_unicode_sub(void **state)
{
    (void)state;
    char *t = s_mint("Zoë \xe5\xbc\xa0", "*", NULL, "l", NOW + 5);
    char id[PUSH_IDENTITY_MAX + 1];
    assert_int_equal(push_token_verify(SECRET, SLEN, t, NOW, "x", 'l', id), PUSH_TOKEN_OK);
    assert_string_equal(id, "Zoë \xe5\xbc\xa0");
    free(t);
}

static void test_result_strings(void **state)
{
    (void)state;
    assert_string_equal(push_token_result_str(PUSH_TOKEN_MISSING), "token missing");
    assert_string_equal(push_token_result_str(PUSH_TOKEN_MALFORMED), "token malformed");
    assert_string_equal(push_token_result_str(PUSH_TOKEN_BAD_SIGNATURE),
                        "token signature invalid");
    assert_string_equal(push_token_result_str(PUSH_TOKEN_EXPIRED), "token expired");
    assert_string_equal(push_token_right_name('s'), "subscribe");
    assert_string_equal(push_token_right_name('p'), "publish");
    assert_string_equal(push_token_right_name('l'), "presence");
}

/* ---- the secret file ------------------------------------------------------------ */

static char *s_file(const char *content, size_t len, mode_t mode)
{
    char *path = strdup("/tmp/test_token_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void test_secret_load(void **state)
{
    (void)state;
    unsigned char buf[PUSH_TOKEN_SECRET_MAX];
    size_t len = 0;
    int wr = -1;
    char err[256];

    char *p = s_file(SECRET_TEXT "\n", SLEN + 1, 0600);       /* the newline is not secret */
    assert_int_equal(push_token_secret_load(p, buf, &len, &wr, err, sizeof err), 0);
    assert_int_equal(len, SLEN);
    assert_memory_equal(buf, SECRET, SLEN);
    assert_int_equal(wr, 0);
    unlink(p);
    free(p);

    p = s_file(SECRET_TEXT "\r\n\n", SLEN + 3, 0644);
    assert_int_equal(push_token_secret_load(p, buf, &len, &wr, err, sizeof err), 0);
    assert_int_equal(len, SLEN);
    assert_int_equal(wr, 1);
    unlink(p);
    free(p);

    /* binary bytes are kept as they are */
    char bin[40];
    for (int i = 0; i < 40; i++)
        bin[i] = (char)(i * 37);
    bin[39] = 'z';
    p = s_file(bin, sizeof bin, 0400);
    assert_int_equal(push_token_secret_load(p, buf, &len, NULL, err, sizeof err), 0);
    assert_int_equal(len, sizeof bin);
    assert_memory_equal(buf, bin, sizeof bin);
    unlink(p);
    free(p);

    p = s_file("short\n", 6, 0600);
    assert_int_equal(push_token_secret_load(p, buf, &len, &wr, err, sizeof err), -1);
    assert_non_null(strstr(err, "at least 32"));
    unlink(p);
    free(p);

    /* 31 bytes and a newline are still too short */
    p = s_file(SECRET + 1, SLEN - 1, 0600);
    assert_int_equal(push_token_secret_load(p, buf, &len, &wr, err, sizeof err), -1);
    unlink(p);
    free(p);

    static char big[PUSH_TOKEN_SECRET_MAX + 1];
    memset(big, 'k', sizeof big);
    p = s_file(big, sizeof big, 0600);
    assert_int_equal(push_token_secret_load(p, buf, &len, &wr, err, sizeof err), -1);
    assert_non_null(strstr(err, "larger"));
    unlink(p);
    free(p);

    assert_int_equal(push_token_secret_load("/nonexistent/secret", buf, &len, &wr, err,
                                            sizeof err), -1);
    assert_non_null(strstr(err, "cannot open /nonexistent/secret"));
    assert_int_equal(push_token_secret_load("/tmp", buf, &len, &wr, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
}

/* ---- pushctl token: the command line (clients/c/pushctl_args.c) ------------------------- */

static int s_args(pushctl_args_t *a, char *err, ...)
{
    char *argv[40];
    int argc = 0;
    va_list ap;
    argv[argc++] = "pushctl";
    va_start(ap, err);
    for (char *x; (x = va_arg(ap, char *)) != NULL;)
        argv[argc++] = x;
    va_end(ap);
    argv[argc] = NULL;
    return pushctl_args_parse(a, argc, argv, NULL, NULL, NULL, err, 256);
}

#define ARGS_ERR(needle, ...) \
    do { pushctl_args_t a_; char e_[256]; \
         assert_int_equal(s_args(&a_, e_, __VA_ARGS__, (char *)NULL), -1); \
         if (!strstr(e_, needle)) fail_msg("error '%s' lacks '%s'", e_, needle); } while (0)

static void test_pushctl_token_args(void **state)
{
    (void)state;
    pushctl_args_t a;
    char err[256];
    assert_int_equal(s_args(&a, err, "token", "--secret-file", "/s", "--channel", "room:*",
                            "--channel=news", "--rights", "sl", "--sub", "alice", "--ttl", "60",
                            (char *)NULL), 0);
    assert_int_equal(a.cmd, PUSHCTL_CMD_TOKEN);
    assert_string_equal(a.secret_file, "/s");
    assert_int_equal(a.nchannels, 2);
    assert_string_equal(a.channels[0], "room:*");
    assert_string_equal(a.channels[1], "news");
    assert_string_equal(a.rights, "sl");
    assert_string_equal(a.sub, "alice");
    assert_int_equal(a.ttl, 60);

    assert_int_equal(s_args(&a, err, "--rights=p", "token", "--channel", "*", "--secret-file",
                            "f", (char *)NULL), 0);
    assert_null(a.sub);
    assert_int_equal(a.ttl, PUSHCTL_TTL_DEFAULT);

    ARGS_ERR("needs --secret-file", "token", "--channel", "a", "--rights", "s");
    ARGS_ERR("at least one --channel", "token", "--secret-file", "f", "--rights", "s");
    ARGS_ERR("needs --rights", "token", "--secret-file", "f", "--channel", "a");
    ARGS_ERR("not a channel name or pattern", "token", "--channel", "a*b");
    ARGS_ERR("not a channel name or pattern", "token", "--channel", "");
    ARGS_ERR("distinct letters", "token", "--rights", "spx");
    ARGS_ERR("distinct letters", "token", "--rights", "ss");
    ARGS_ERR("--sub", "token", "--sub", "");
    ARGS_ERR("--ttl", "token", "--ttl", "0");
    ARGS_ERR("--ttl", "token", "--ttl", "-5");
    ARGS_ERR("--ttl", "token", "--ttl", "99999999999");
    ARGS_ERR("only valid with 'token'", "publish", "c", "d", "--rights", "s");
    ARGS_ERR("only valid with 'token'", "history", "c", "--channel", "c");
    ARGS_ERR("unexpected argument", "token", "extra", "--secret-file", "f", "--channel", "a",
             "--rights", "s");
    ARGS_ERR("needs a value", "token", "--secret-file", "f", "--channel", "a", "--rights");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_vectors),
        cmocka_unit_test(test_b64url_round_trip_every_length),
        cmocka_unit_test(test_b64url_strict),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_independent_vector),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_malformed_form),
        cmocka_unit_test(test_malformed_payload),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_expiry_boundary),
        cmocka_unit_test(test_no_right),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_mint_refuses_bad_arguments),
        cmocka_unit_test(test_unicode_sub),
        cmocka_unit_test(test_result_strings),
        cmocka_unit_test(test_secret_load),
        cmocka_unit_test(test_pushctl_token_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
