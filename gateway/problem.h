/* problem.h - the one place an error becomes an HTTP status and a body.
 *
 * Every error the gateway can answer with is listed once in GW_ERRORS; the
 * list gives the stable machine-readable code, the HTTP status and the title.
 * Bodies are RFC 9457 problem details (application/problem+json).  Pure: any
 * thread may call it. */
#ifndef GW_PROBLEM_H
#define GW_PROBLEM_H

#include <stddef.h>

#define GW_PROBLEM_CONTENT_TYPE "application/problem+json"

/* X(enum suffix, code, status, title) */
#define GW_ERRORS(X)                                                           \
    X(OK, ok, 200, "OK")                                                       \
    X(BAD_REQUEST, bad_request, 400, "Malformed request")                      \
    X(INVALID_N, invalid_n, 400, "Invalid n")                                  \
    X(N_OUT_OF_RANGE, n_out_of_range, 400, "n out of range")                   \
    X(INVALID_TIMEOUT, invalid_timeout, 400, "Invalid timeout")                \
    X(UNAUTHORIZED, unauthorized, 401, "Unauthorized")                         \
    X(INVALID_PARAM, invalid_param, 400, "Invalid path parameter")             \
    X(NOT_FOUND, not_found, 404, "Not found")                                  \
    X(METHOD_NOT_ALLOWED, method_not_allowed, 405, "Method not allowed")       \
    X(REQUEST_TIMEOUT, request_timeout, 408, "Request too slow")               \
    X(BODY_TOO_LARGE, body_too_large, 413, "Request body too large")           \
    X(UNSUPPORTED_MEDIA_TYPE, unsupported_media_type, 415,                     \
      "Unsupported media type")                                                \
    X(URI_TOO_LONG, uri_too_long, 414, "Request target too long")              \
    X(HEADERS_TOO_LARGE, headers_too_large, 431, "Request head too large")     \
    X(WORKER_REJECTED, worker_rejected, 400, "Request rejected by worker")     \
    X(INTERNAL, internal, 500, "Internal error")                               \
    X(WORKER_ERROR, worker_error, 502, "Worker failed")                        \
    X(WORKER_CRASHED, worker_crashed, 502, "Workers crashed on this request")  \
    X(BAD_REPLY, bad_reply, 502, "Bad reply from worker")                      \
    X(CONNECTION_LOST, connection_lost, 502, "Broker connection lost")         \
    X(BROKER_UNAVAILABLE, broker_unavailable, 503, "Broker unavailable")       \
    X(OVERLOADED, overloaded, 503, "Too many calls in flight")                 \
    X(SHUTTING_DOWN, shutting_down, 503, "Shutting down")                      \
    X(NOT_QUEUED, not_queued, 503, "Broker refused the message")               \
    X(NO_SERVER, no_server, 504, "No server")                                  \
    X(TIMEOUT, timeout, 504, "Timed out")

typedef enum {
#define GW_X(e, code, status, title) GW_E_##e,
    GW_ERRORS(GW_X)
#undef GW_X
        GW_E__COUNT
} gw_err_t;

/* The stable code ("timeout"), HTTP status and title of an error. */
const char *gw_err_code(gw_err_t err);
int gw_err_status(gw_err_t err);
const char *gw_err_title(gw_err_t err);

/* The detail of a worker's error reply, forwarded to the caller. */
typedef struct {
    const char *type;    /* fibrpc error type, e.g. "out_of_range" */
    const char *message; /* the worker's own words */
} gw_worker_error_t;

/* gw_problem_json: build the problem body for err.  detail and instance may
 * be NULL; request_id may be NULL; worker may be NULL.  Returns a malloc'd
 * NUL-terminated string (length in *len), or NULL when out of memory. */
char *gw_problem_json(gw_err_t err, const char *detail, const char *instance,
                      const char *request_id, const gw_worker_error_t *worker,
                      size_t *len);

/* As gw_problem_json, but with HTTP status `status` instead of err's own:
 * /readyz answers every reason for not being ready with 503. */
char *gw_problem_json_status(gw_err_t err, int status, const char *detail,
                             const char *instance, const char *request_id,
                             const gw_worker_error_t *worker, size_t *len);

#endif
