/* The C shim of kamailio-sys: the parts of Kamailio's API that are macros or inline
 * functions, wrapped as real functions so Rust can call them. */
#ifndef KAMAILIO_RS_SHIM_H
#define KAMAILIO_RS_SHIM_H

#include <stddef.h>

struct _str;
struct gen_lock_t_dummy;

/* The name of the module that loads the shim (a string that outlives it):
 * its log lines and shm allocations are the module's. Set at registration. */
void krs_set_module_name(const char *name);

/* Logging: LOG_FX with our module name, so Kamailio's per-module debug
 * level (debugger's mod_level) and log_stderror/syslog routing apply. */
int krs_log_enabled(int level);
void krs_log(int level, const char *prefix, const char *func, const char *msg);

/* Shared memory (shm_malloc/shm_free are macros over _shm_root). */
void *krs_shm_malloc(size_t size);
void *krs_shm_mallocxz(size_t size);
void krs_shm_free(void *p);

/* Kamailio locks (gen_lock_t; futex based in the Debian build). */
void *krs_lock_alloc_init(void);
void krs_lock_get(void *lock);
void krs_lock_release(void *lock);

/* cfg framework: refresh the local copy of the config in a long-lived loop */
void krs_cfg_update(void);

/* The strings the core compares against module_version/module_flags,
 * computed from the same defines this shim is compiled with. */
const char *krs_core_full_version(void);
const char *krs_core_compile_flags(void);

#endif

/* sip_msg accessors (macros and inline parsers in the core). */
struct sip_msg;
/* R-URI user part; 0 on success. */
int krs_msg_ruri_user(struct sip_msg *msg, struct _str *user);
/* Body per Content-Length; -1 without a Content-Length header. */
int krs_msg_body(struct sip_msg *msg, struct _str *body);
/* Max-Forwards value, -1 when absent or unparsable. */
int krs_msg_max_forwards(struct sip_msg *msg);
/* The From header's value as received (its body is not parsed: that
 * would cost pkg memory per message); 0 on success. */
int krs_msg_from_value(struct sip_msg *msg, struct _str *value);

/* event_route index by name, -1 when the script has no such route. */
int krs_event_route_lookup(const char *name);
/* Runs event_route[rt] with $xavp(name=>k1) = v1, $xavp(name=>k2) = v2. */
int krs_run_event_route(int rt, const char *name, int name_len,
		const char *k1, int k1_len, const char *v1, int v1_len,
		const char *k2, int k2_len, const char *v2, int v2_len);
/* Runs upstream's peer event `evname` for node `uri` (as $ru):
 * event_route[rt] when rt >= 0, else the KEMI function `cb` with evname
 * as its parameter. -1 when nothing could run. */
int krs_run_event(int rt, const char *cb, int cb_len,
		const char *evname, int evname_len, const char *uri, int uri_len);
/* One request from the core's socket `sock` (a struct socket_info) to
 * ip:port over `proto` (PROTO_UDP: one datagram; PROTO_TCP, PROTO_TLS: on
 * a connection from the socket's address, made if needed, as tm sends);
 * `ip` holds 4 bytes (v6 == 0) or 16 (v6 != 0); <0 when it could not be
 * sent or handed to a connection. */
int krs_send(void *sock, int proto, int v6, const unsigned char *ip,
		int port, const char *buf, int len);
/* Takes the lock if it is free: 0 when taken, -1 when held elsewhere. */
int krs_lock_try(void *lock);
/* pkg_free is a macro over _pkg_root. */
void krs_pkg_free(void *p);
/* set_force_socket is a macro (sets the socket and the send flag). */
void krs_set_force_socket(struct sip_msg *msg, void *sock);
/* Parses every header, as consumers expect of a message handed to them
 * (the stock module parses all before cloning the message for a worker). */
int krs_parse_all_headers(struct sip_msg *msg);
/* Every address a host name resolves to through the core's resolver
 * (17 bytes each in `out`: family 4 or 6, then 16 address bytes); count. */
int krs_resolve_host(const char *name, unsigned char *out, int max);
/* Source address of a received message: 16 bytes into ip (4 used for
 * IPv4), the port into *port; returns 4 or 6, -1 otherwise. */
int krs_msg_source(struct sip_msg *msg, unsigned char *ip, int *port);
/* For a reply (the core parsed Via, Call-ID and CSeq before the pre-script
 * callbacks): the first Via's branch, Call-ID, CSeq number and method;
 * returns the status code, -1 when something is missing. */
int krs_reply_ids(struct sip_msg *msg, struct _str *branch, struct _str *callid,
		struct _str *cseq_number, struct _str *cseq_method);
/* What identifies a request (for signatures): the R-URI as written, the
 * Call-ID and the CSeq number; -1 when something is missing. */
int krs_request_ids(struct sip_msg *msg, struct _str *ruri, struct _str *callid,
		struct _str *cseq_number);
/* The body of the first header named `name` (any case); -1 when none. */
int krs_msg_header(struct sip_msg *msg, const char *name, int name_len,
		struct _str *value);
/* A callback the core runs for every reply before onreply_route (pre-script
 * ONREPLY); returning 0 consumes the reply. */
int krs_register_pre_reply_cb(int (*f)(struct sip_msg *, unsigned int, void *), void *param);
/* The Via sent-by ("host:port", IPv6 in brackets, the advertised address
 * when there is one) of a core socket into buf; returns its proto, -1 on error. */
int krs_socket_sent_by(void *sock, char *buf, int len);
