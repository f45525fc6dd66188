/* test_sha256.c - common/sha256: the FIPS 180 test vectors (FIPS 180-2
 * appendix B and the NIST examples), the padding boundaries around 55/56
 * and 64 bytes, and that any split of the input gives the same digest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sha256.h"

static void check(const void *data, size_t len, const char *want) {
    uint8_t d[CM_SHA256_LEN];
    char hex[CM_SHA256_HEX_LEN + 1];

    cm_sha256(data, len, d);
    cm_sha256_hex(d, hex);
    assert_string_equal(hex, want);
}

static void test_fips_vectors(void **state) {
    static const char two_blocks[] =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
        "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    char *million = malloc(1000000);

    check("abc", 3,
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check("", 0,
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    check(two_blocks, sizeof(two_blocks) - 1,
          "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    assert_non_null(million);
    memset(million, 'a', 1000000);
    check(million, 1000000,
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
}

/* Lengths where the padding and the length field just fit, just do not,
 * or fill a block exactly (bytes (7i+3) mod 256; digests from an
 * independent implementation). */
static void test_padding_boundaries(void **state) {
    static const struct {
        size_t len;
        const char *hex;
    } cases[] = {
        {55,
         "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"},
        {56,
         "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"},
        {57,
         "35df609437dcfea3279283ab79fd554e2bf78f8f7ae2de532d8ee300b09e8f73"},
        {63,
         "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"},
        {64,
         "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"},
        {65,
         "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"},
        {119,
         "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"},
        {120,
         "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"},
        {127,
         "a8d23e75d936f303d248888d9b165ee543f4cbafcad3c9dd2a79bd84faa11d07"},
        {128,
         "d2742f1f4ac6bb7ca2b239ee18402ba8b3f9f8e652d2a72973c2b9ba11c08cf6"},
        {129,
         "307f8fc2c1622b92762e818d39a185d4d667ad49a4b07ceae1f4afa008a93ec4"},
    };
    uint8_t buf[129];
    size_t i;

    for (i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check(buf, cases[i].len, cases[i].hex);
}

/* Every way of cutting 129 bytes in two, and byte by byte. */
static void test_splits(void **state) {
    uint8_t buf[129], whole[CM_SHA256_LEN], part[CM_SHA256_LEN];
    cm_sha256_t s;
    size_t i, cut;

    for (i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    cm_sha256(buf, sizeof(buf), whole);
    for (cut = 0; cut <= sizeof(buf); cut++) {
        cm_sha256_init(&s);
        cm_sha256_update(&s, buf, cut);
        cm_sha256_update(&s, buf + cut, sizeof(buf) - cut);
        cm_sha256_final(&s, part);
        assert_memory_equal(part, whole, CM_SHA256_LEN);
    }
    cm_sha256_init(&s);
    for (i = 0; i < sizeof(buf); i++)
        cm_sha256_update(&s, buf + i, 1);
    cm_sha256_final(&s, part);
    assert_memory_equal(part, whole, CM_SHA256_LEN);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fips_vectors),
        cmocka_unit_test(test_padding_boundaries),
        cmocka_unit_test(test_splits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
