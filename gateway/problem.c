/* problem.c - error codes to HTTP status and RFC 9457 problem JSON.
 * Pure; any thread. */
#include "problem.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define GW_PROBLEM_TYPE_PREFIX "urn:problem:fib-gateway:"

static const struct {
    const char *code;
    int status;
    const char *title;
} gw_errors[] = {
#define GW_X(e, code, status, title) {#code, status, title},
    GW_ERRORS(GW_X)
#undef GW_X
};

const char *gw_err_code(gw_err_t err) {
    return (unsigned)err < GW_E__COUNT ? gw_errors[err].code : "internal";
}

int gw_err_status(gw_err_t err) {
    return (unsigned)err < GW_E__COUNT ? gw_errors[err].status : 500;
}

const char *gw_err_title(gw_err_t err) {
    return (unsigned)err < GW_E__COUNT ? gw_errors[err].title
                                       : "Internal error";
}

char *gw_problem_json(gw_err_t err, const char *detail, const char *instance,
                      const char *request_id, const gw_worker_error_t *worker,
                      size_t *len) {
    return gw_problem_json_status(err, gw_err_status(err), detail, instance,
                                  request_id, worker, len);
}

char *gw_problem_json_status(gw_err_t err, int status, const char *detail,
                             const char *instance, const char *request_id,
                             const gw_worker_error_t *worker, size_t *len) {
    char type[96];
    json_t *obj, *w;
    char *out = NULL;

    if ((unsigned)err >= GW_E__COUNT)
        err = GW_E_INTERNAL;
    snprintf(type, sizeof(type), "%s%s", GW_PROBLEM_TYPE_PREFIX,
             gw_err_code(err));
    obj = json_object();
    if (obj == NULL)
        return NULL;
    /* json_*_nocheck would trust the strings to be UTF-8; a worker's message
     * or a request path need not be, so the checked setters are used and a
     * field that fails is simply left out. */
    json_object_set_new(obj, "type", json_string(type));
    json_object_set_new(obj, "title", json_string(gw_err_title(err)));
    json_object_set_new(obj, "status", json_integer(status));
    json_object_set_new(obj, "detail",
                        json_string(detail ? detail : gw_err_title(err)));
    json_object_set_new(obj, "code", json_string(gw_err_code(err)));
    if (instance != NULL)
        json_object_set_new(obj, "instance", json_string(instance));
    if (request_id != NULL)
        json_object_set_new(obj, "request_id", json_string(request_id));
    if (worker != NULL) {
        w = json_object();
        if (w != NULL) {
            json_object_set_new(w, "type", json_string(worker->type));
            json_object_set_new(w, "message", json_string(worker->message));
            json_object_set_new(obj, "worker_error", w);
        }
    }
    out = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (out != NULL && len != NULL)
        *len = strlen(out);
    return out;
}
