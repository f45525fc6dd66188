/* test_auth.c - gateway/auth: the token file (comments, blank lines, CRLF,
 * and each mistake named with its line), the Authorization header's
 * verdict, and the exempt paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"

/* SHA-256 of "fgw_alice", "fgw_bob" and "tok=" (from sha256sum). */
#define ALICE "cdce83bc87cb5a340669449bf52e16a7690f799adaf06d5594ad8dbecd258455"
#define BOB   "6e910af6f2e4a13fa78b72d40c63b8de760cea4134703134711654e6679f2e67"
#define TOKEQ "9ea7590cfb6de13b806df0fdd6677f1d0c70a69b8175025bda048b0aaf05afa1"

static gw_auth_t *parse(const char *text, char *why, size_t size) {
    return gw_auth_parse(text, strlen(text), why, size);
}

static void test_file_forms(void **state) {
    static const char text[] = "# tokens for the gateway\n"
                               "\n" ALICE "  # alice, 2026-01\r\n"
                               "   \t" BOB "\t\n"
                               "#" TOKEQ "\n" /* commented out */
                               "   # indented comment\n" BOB;
    char why[200] = "";
    gw_auth_t *set = parse(text, why, sizeof(why));

    assert_non_null(set);
    assert_int_equal(gw_auth_count(set), 3);
    assert_int_equal(gw_auth_check(set, "Bearer fgw_alice", 1), GW_AUTH_OK);
    assert_int_equal(gw_auth_check(set, "Bearer fgw_bob", 1), GW_AUTH_OK);
    assert_int_equal(gw_auth_check(set, "Bearer tok=", 1), GW_AUTH_REJECTED);
    gw_auth_free(set);
    gw_auth_free(NULL);
}

static void refused(const char *text, size_t len, const char *want) {
    char why[300] = "";

    assert_null(gw_auth_parse(text, len, why, sizeof(why)));
    if (strstr(why, want) == NULL)
        fail_msg("why: '%s', want it to contain '%s'", why, want);
}

/* A literal's bytes, NULs included. */
#define REFUSED(text, want) refused(text, sizeof(text) - 1, want)

static void test_file_mistakes(void **state) {
    REFUSED("", "no token hash");
    REFUSED("# only\n\n  \n", "no token hash");
    REFUSED(ALICE
            "\nCDCE83BC87CB5A340669449BF52E16A7690F799ADAF06D5594AD8DBECD2"
            "58455\n",
            "line 2: uppercase hex digit 'C'");
    REFUSED(ALICE "\n\nfgw_alice\n", "line 3: character 0x67 is not a hex");
    REFUSED("abcdef\n", "line 1: 6 hex digits, not 64");
    REFUSED(ALICE "0\n", "line 1: 65 hex digits");
    REFUSED(ALICE " " BOB "\n", "line 1: more than one word");
    REFUSED(ALICE "\n\0" BOB, "line 2: a NUL byte");
}

static void test_load(void **state) {
    char path[] = "/tmp/test_auth_XXXXXX", why[300];
    int fd = mkstemp(path);
    FILE *f;
    gw_auth_t *set;
    size_t i;

    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs(ALICE "\n", f);
    fclose(f);
    set = gw_auth_load(path, why, sizeof(why));
    assert_non_null(set);
    assert_int_equal(gw_auth_count(set), 1);
    gw_auth_free(set);

    /* Larger than the cap: refused unparsed. */
    f = fopen(path, "w");
    for (i = 0; i <= GW_AUTH_FILE_MAX / 65; i++)
        fputs(ALICE "\n", f);
    fclose(f);
    assert_null(gw_auth_load(path, why, sizeof(why)));
    assert_string_equal(why, "cannot read it: larger than 1 MiB");
    unlink(path);

    assert_null(gw_auth_load(path, why, sizeof(why)));
    assert_string_equal(why, "cannot read it: No such file or directory");
}

static void test_header_verdicts(void **state) {
    char why[200], big[GW_AUTH_TOKEN_MAX + 16];
    gw_auth_t *set = parse(ALICE "\n" TOKEQ "\n", why, sizeof(why));

    assert_non_null(set);
    assert_int_equal(gw_auth_check(set, NULL, 0), GW_AUTH_MISSING);
    assert_int_equal(gw_auth_check(set, "Bearer fgw_alice", 1), GW_AUTH_OK);
    /* The scheme is case-insensitive; spaces after it are one separator. */
    assert_int_equal(gw_auth_check(set, "bearer fgw_alice", 1), GW_AUTH_OK);
    assert_int_equal(gw_auth_check(set, "BEARER   fgw_alice", 1), GW_AUTH_OK);
    /* Trailing '=' belong to the token. */
    assert_int_equal(gw_auth_check(set, "Bearer tok=", 1), GW_AUTH_OK);
    assert_int_equal(gw_auth_check(set, "Bearer tok", 1), GW_AUTH_REJECTED);
    /* The token itself is case-sensitive. */
    assert_int_equal(gw_auth_check(set, "Bearer FGW_alice", 1),
                     GW_AUTH_REJECTED);
    assert_int_equal(gw_auth_check(set, "Bearer fgw_alicf", 1),
                     GW_AUTH_REJECTED);
    /* Its hash is not the token. */
    assert_int_equal(gw_auth_check(set, "Bearer " ALICE, 1), GW_AUTH_REJECTED);

    /* Malformed: another scheme, no token, bad characters, two headers. */
    assert_int_equal(gw_auth_check(set, "Basic Zm9vOmJhcg==", 1),
                     GW_AUTH_MALFORMED);
    assert_int_equal(gw_auth_check(set, "Bearer", 1), GW_AUTH_MALFORMED);
    assert_int_equal(gw_auth_check(set, "Bearerfgw_alice", 1),
                     GW_AUTH_MALFORMED);
    assert_int_equal(gw_auth_check(set, "Bearer ", 1), GW_AUTH_MALFORMED);
    assert_int_equal(gw_auth_check(set, "Bearer fgw alice", 1),
                     GW_AUTH_MALFORMED);
    assert_int_equal(gw_auth_check(set, "Bearer fgw_alice,x", 1),
                     GW_AUTH_MALFORMED);
    assert_int_equal(gw_auth_check(set, "Bearer =abc", 1), GW_AUTH_MALFORMED);
    assert_int_equal(gw_auth_check(set, "Bearer ab=c", 1), GW_AUTH_MALFORMED);
    assert_int_equal(gw_auth_check(set, "Bearer \"fgw_alice\"", 1),
                     GW_AUTH_MALFORMED);
    assert_int_equal(gw_auth_check(set, "Bearer fgw_alice\x01", 1),
                     GW_AUTH_MALFORMED);
    assert_int_equal(gw_auth_check(set, "Bearer fgw_alice", 2),
                     GW_AUTH_MALFORMED);
    /* The longest token is judged; one longer is refused unhashed. */
    memcpy(big, "Bearer ", 7);
    memset(big + 7, 'a', GW_AUTH_TOKEN_MAX);
    big[7 + GW_AUTH_TOKEN_MAX] = '\0';
    assert_int_equal(gw_auth_check(set, big, 1), GW_AUTH_REJECTED);
    big[7 + GW_AUTH_TOKEN_MAX] = 'a';
    big[8 + GW_AUTH_TOKEN_MAX] = '\0';
    assert_int_equal(gw_auth_check(set, big, 1), GW_AUTH_MALFORMED);

    /* No set: nothing passes. */
    assert_int_equal(gw_auth_check(NULL, "Bearer fgw_alice", 1),
                     GW_AUTH_REJECTED);
    gw_auth_free(set);
}

static void test_exempt(void **state) {
    static const char dflt[] = "/healthz,/readyz,/metrics";
    char why[200];

    assert_true(gw_auth_exempt(dflt, "/healthz"));
    assert_true(gw_auth_exempt(dflt, "/readyz"));
    assert_true(gw_auth_exempt(dflt, "/metrics"));
    assert_false(gw_auth_exempt(dflt, "/metrics/"));
    assert_false(gw_auth_exempt(dflt, "/metric"));
    assert_false(gw_auth_exempt(dflt, "/"));
    assert_false(gw_auth_exempt(dflt, "/fib/1"));
    assert_false(gw_auth_exempt(dflt, ""));
    assert_true(gw_auth_exempt(" / , /openapi.yaml ", "/"));
    assert_true(gw_auth_exempt(" / , /openapi.yaml ", "/openapi.yaml"));
    assert_false(gw_auth_exempt("none", "/healthz"));
    assert_false(gw_auth_exempt("none", "none"));

    assert_int_equal(gw_auth_exempt_valid(dflt, why, sizeof(why)), 0);
    assert_int_equal(gw_auth_exempt_valid("none", why, sizeof(why)), 0);
    assert_int_equal(gw_auth_exempt_valid("/, /x ", why, sizeof(why)), 0);
    assert_int_equal(gw_auth_exempt_valid("healthz", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "'healthz' is not a path"));
    assert_int_equal(gw_auth_exempt_valid("/a,,/b", why, sizeof(why)), -1);
    assert_int_equal(gw_auth_exempt_valid("/a b", why, sizeof(why)), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_forms),
        cmocka_unit_test(test_file_mistakes),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_header_verdicts),
        cmocka_unit_test(test_exempt),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
