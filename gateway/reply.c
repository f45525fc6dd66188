/* reply.c - classify a worker's reply: digits, a worker error, or garbage.
 * Pure; any thread. */
#include "reply.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "fibrpc.h"

static const struct {
    const char *type;
    int caller_fault;
} error_types[] = {
#define FIBRPC_X(name, fault) {#name, fault},
    FIBRPC_ERROR_TYPES(FIBRPC_X)
#undef FIBRPC_X
};

static int is_error_type(const char *ct, size_t len) {
    size_t want = strlen(FIBRPC_ERROR_CONTENT_TYPE);

    /* Media types are case-insensitive (RFC 9110); parameters such as ";
     * charset=utf-8" may follow the media type. */
    return ct != NULL && len >= want &&
           strncasecmp(ct, FIBRPC_ERROR_CONTENT_TYPE, want) == 0 &&
           (len == want || ct[want] == ';' || ct[want] == ' ');
}

static void bad_reply(gw_reply_t *out, const char *why) {
    out->err = GW_E_BAD_REPLY;
    snprintf(out->message, sizeof(out->message), "%s", why);
}

static void parse_error(const char *body, size_t len, gw_reply_t *out) {
    json_t *root, *type, *message;
    size_t i;

    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    type = json_object_get(root, "type");
    message = json_object_get(root, "message");
    if (!json_is_object(root) || !json_is_string(type) ||
        !json_is_string(message) || json_string_length(type) == 0 ||
        json_string_length(type) >= sizeof(out->type)) {
        bad_reply(out, "error reply is not a valid error object");
        goto out;
    }
    snprintf(out->type, sizeof(out->type), "%s", json_string_value(type));
    /* Truncation may split a UTF-8 sequence; the problem builder drops a
     * field it cannot encode, so cut an incomplete last character.  jansson
     * has validated the string, so each lead byte gives its own length. */
    snprintf(out->message, sizeof(out->message), "%s",
             json_string_value(message));
    i = strlen(out->message);
    if (json_string_length(message) > i) {
        size_t lead = i;
        while (lead > 0 &&
               ((unsigned char)out->message[lead - 1] & 0xc0) == 0x80)
            lead--;
        if (lead > 0) {
            unsigned char c = (unsigned char)out->message[lead - 1];
            size_t need = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            if (i - (lead - 1) < need)
                out->message[lead - 1] = '\0';
        }
    }
    out->err = GW_E_WORKER_ERROR;
    for (i = 0; i < sizeof(error_types) / sizeof(error_types[0]); i++)
        if (strcmp(out->type, error_types[i].type) == 0 &&
            error_types[i].caller_fault)
            out->err = GW_E_WORKER_REJECTED;
    /* One deadline, one answer: the worker saw the call's deadline pass,
     * which is a timeout whoever noticed it. */
    if (strcmp(out->type, "expired") == 0)
        out->err = GW_E_TIMEOUT;
    /* Delivered again and again without an answer (--delivery-limit):
     * its own code, so that a caller knows retrying will not help. */
    if (strcmp(out->type, "worker_crashed") == 0)
        out->err = GW_E_WORKER_CRASHED;
out:
    json_decref(root);
}

void gw_reply_parse(const char *content_type, size_t content_type_len,
                    const void *body, size_t body_len, gw_reply_t *out) {
    const char *b = body;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (is_error_type(content_type, content_type_len)) {
        parse_error(b, body_len, out);
        return;
    }
    if (body_len == 0) {
        bad_reply(out, "reply is empty");
        return;
    }
    for (i = 0; i < body_len; i++) {
        if (b[i] < '0' || b[i] > '9') {
            bad_reply(out, "reply is not a decimal number");
            return;
        }
    }
    if (b[0] == '0' && body_len > 1) {
        bad_reply(out, "reply has leading zeros");
        return;
    }
    out->err = GW_E_OK;
    out->digits = b;
    out->digits_len = body_len;
}

void gw_reply_parse_raw(const char *content_type, size_t content_type_len,
                        const void *body, size_t body_len,
                        const gw_hval_t *status_header, gw_reply_t *out,
                        int *status) {
    int64_t v = 200;
    size_t i;

    memset(out, 0, sizeof(*out));
    *status = 0;
    if (is_error_type(content_type, content_type_len)) {
        parse_error(body, body_len, out);
        return;
    }
    switch (status_header->kind) {
    case GW_HVAL_NONE:
        break;
    case GW_HVAL_INT:
        v = status_header->i;
        break;
    case GW_HVAL_STR: /* pika sends ints as ints, others send text */
        if (status_header->len == 0 || status_header->len > 3)
            goto bad;
        for (i = 0, v = 0; i < status_header->len; i++) {
            if (status_header->s[i] < '0' || status_header->s[i] > '9')
                goto bad;
            v = v * 10 + (status_header->s[i] - '0');
        }
        break;
    default:
        goto bad;
    }
    if (v < 200 || v > 599)
        goto bad;
    out->err = GW_E_OK;
    out->digits = body; /* the body, whatever it holds */
    out->digits_len = body_len;
    *status = (int)v;
    return;
bad:
    bad_reply(out, "reply header " GWRPC_HDR_STATUS
                   " must be an HTTP status from 200 to 599");
}

static int header_byte_ok(unsigned char c) {
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

int gw_reply_header_text(const gw_hval_t *v, char *out, size_t size) {
    size_t i;

    if (v->kind == GW_HVAL_INT) {
        int n = snprintf(out, size, "%lld", (long long)v->i);

        return n > 0 && (size_t)n < size ? 0 : -1;
    }
    if (v->kind != GW_HVAL_STR || v->len >= size)
        return -1;
    for (i = 0; i < v->len; i++)
        if (!header_byte_ok((unsigned char)v->s[i]))
            return -1; /* CR, LF, NUL: a header of our own, smuggled */
    memcpy(out, v->s, v->len);
    out[v->len] = '\0';
    return 0;
}

int gw_reply_content_type_ok(const char *s, size_t len) {
    size_t i;

    if (s == NULL || len == 0 || len > 255)
        return 0;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}
