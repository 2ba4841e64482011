/* The C shim of kamailio-sys. See shim.h for why each function exists. */
#include <string.h>

#include "core/sr_module.h"
#include "core/dprint.h"
#include "core/mem/shm_mem.h"
#include "core/mem/mem.h"
#include "core/locking.h"
#include "core/cfg/cfg_struct.h"
#include "core/ver_defs.h"

#include "shim.h"

/* The module a line is logged for and shm is accounted to (`kamcmd
 * mod.stats`) is the module that loads this shim, known when it registers
 * (krs_set_module_name), not when the shim is compiled: the core's macros
 * take the name as a literal (MOD_NAME), so the ones the shim's own
 * functions below use read it from here instead. (Inline functions of the
 * core's headers, compiled above, keep the generic MOD_NAME.) */
static const char *krs_module_name = "kamailio_rs";
static int krs_module_name_len = sizeof("kamailio_rs") - 1;

void krs_set_module_name(const char *name)
{
	krs_module_name = name;
	krs_module_name_len = strlen(name);
}

#undef LOG_MNAME
#define LOG_MNAME ((char *)krs_module_name)
#undef LOG_MNAME_LEN
#define LOG_MNAME_LEN krs_module_name_len
#undef _SRC_MODULE_
#define _SRC_MODULE_ krs_module_name
#undef _SRC_LOC_
#define _SRC_LOC_ "kamailio-rs shim"

int krs_log_enabled(int level)
{
	return is_printable(level);
}

void krs_log(int level, const char *prefix, const char *func, const char *msg)
{
	LOG_FX(DEFAULT_FACILITY, level, NULL, prefix, func, "%s\n", msg);
}

void *krs_shm_malloc(size_t size)
{
	return shm_malloc(size);
}

void *krs_shm_mallocxz(size_t size)
{
	return shm_mallocxz(size);
}

void krs_shm_free(void *p)
{
	shm_free(p);
}

void *krs_lock_alloc_init(void)
{
	gen_lock_t *lock = lock_alloc();
	if(lock == NULL)
		return NULL;
	if(lock_init(lock) == NULL) {
		lock_dealloc(lock);
		return NULL;
	}
	return lock;
}

void krs_lock_get(void *lock)
{
	lock_get((gen_lock_t *)lock);
}

void krs_lock_release(void *lock)
{
	lock_release((gen_lock_t *)lock);
}

void krs_cfg_update(void)
{
	cfg_update();
}

const char *krs_core_full_version(void)
{
	return SER_FULL_VERSION;
}

const char *krs_core_compile_flags(void)
{
	return SER_COMPILE_FLAGS;
}

#include "core/parser/msg_parser.h"
#include "core/parser/parse_uri.h"
#include "core/parser/parse_content.h"
#include "core/ut.h"
#include "core/ip_addr.h"

int krs_msg_ruri_user(struct sip_msg *msg, str *user)
{
	if(parse_sip_msg_uri(msg) < 0)
		return -1;
	*user = msg->parsed_uri.user;
	return 0;
}

int krs_msg_body(struct sip_msg *msg, str *body)
{
	long len;
	if(parse_headers(msg, HDR_CONTENTLENGTH_F, 0) < 0 || msg->content_length == NULL)
		return -1;
	len = get_content_length(msg);
	body->s = NULL;
	body->len = 0;
	if(len <= 0)
		return 0;
	body->s = get_body(msg);
	if(body->s == NULL)
		return -1;
	/* never trust Content-Length beyond the received buffer */
	if(body->s + len > msg->buf + msg->len)
		return -1;
	body->len = (int)len;
	return 0;
}

int krs_msg_max_forwards(struct sip_msg *msg)
{
	int mf = -1;
	if(parse_headers(msg, HDR_MAXFORWARDS_F, 0) < 0 || msg->maxforwards == NULL)
		return -1;
	if(msg->maxforwards->parsed != NULL) {
		/* maxfwd already parsed and decremented it; parsed is the original+1 */
		return (int)(long)msg->maxforwards->parsed - 1;
	}
	if(str2sint(&msg->maxforwards->body, &mf) < 0)
		return -1;
	return mf;
}

#include "core/parser/parse_from.h"

int krs_msg_from_value(struct sip_msg *msg, str *value)
{
	if(parse_headers(msg, HDR_FROM_F, 0) < 0 || msg->from == NULL)
		return -1;
	*value = msg->from->body;
	return 0;
}

#include "core/route.h"
#include "core/action.h"
#include "core/fmsg.h"
#include "core/xavp.h"

int krs_event_route_lookup(const char *name)
{
	int rt = route_lookup(&event_rt, (char *)name);
	if(rt < 0 || event_rt.rlist[rt] == NULL)
		return -1;
	return rt;
}

/* Runs event_route[rt] on a faked request with $xavp(name=>k1) = v1 and
 * $xavp(name=>k2) = v2 set, then removes the xavp again (the core copies
 * names and values into the xavp). */
int krs_run_event_route(int rt, const char *name, int name_len,
		const char *k1, int k1_len, const char *v1, int v1_len,
		const char *k2, int k2_len, const char *v2, int v2_len)
{
	str xname = {(char *)name, name_len};
	str kstatus = {(char *)k2, k2_len};
	str kuri = {(char *)k1, k1_len};
	const char *status = v2, *uri = v1;
	int status_len = v2_len, uri_len = v1_len;
	struct run_act_ctx ctx;
	sr_xval_t val;
	sip_msg_t *fmsg;
	int backup_rt;

	if(rt < 0 || event_rt.rlist[rt] == NULL)
		return -1;
	memset(&val, 0, sizeof(val));
	val.type = SR_XTYPE_STR;
	val.v.s.s = (char *)status;
	val.v.s.len = status_len;
	/* a fresh root, so a route that ran before cannot leave stale fields */
	if(xavp_add_xavp_value(&xname, &kstatus, &val, NULL) == NULL)
		return -1;
	val.v.s.s = (char *)uri;
	val.v.s.len = uri_len;
	if(xavp_set_child_xval(&xname, &kuri, &val) < 0) {
		xavp_rm_by_name(&xname, 1, NULL);
		return -1;
	}
	fmsg = faked_msg_next();
	backup_rt = get_route_type();
	set_route_type(EVENT_ROUTE);
	init_run_actions_ctx(&ctx);
	run_top_route(event_rt.rlist[rt], fmsg, &ctx);
	set_route_type(backup_rt);
	xavp_rm_by_name(&xname, 1, NULL);
	return 0;
}

#include "core/kemi.h"
#include "core/dset.h"

/* Runs one of upstream's peer events on a faked request whose R-URI ($ru)
 * is the node's URI: event_route[rt] when rt >= 0, else the KEMI function
 * `cb` of the loaded engine with the event name as its parameter. The
 * R-URI is freed again afterwards. -1 when nothing could run. */
int krs_run_event(int rt, const char *cb, int cb_len,
		const char *evname, int evname_len, const char *uri, int uri_len)
{
	struct run_act_ctx ctx;
	sip_msg_t *fmsg;
	sr_kemi_eng_t *keng = NULL;
	str suri, scb, sev;
	int backup_rt, ret = 0;

	if(rt >= 0) {
		if(event_rt.rlist[rt] == NULL)
			return -1;
	} else {
		if(cb == NULL || cb_len <= 0)
			return -1;
		keng = sr_kemi_eng_get();
		if(keng == NULL)
			return -1;
	}
	fmsg = faked_msg_next();
	suri.s = (char *)uri;
	suri.len = uri_len;
	if(rewrite_uri(fmsg, &suri) < 0)
		return -1;
	backup_rt = get_route_type();
	set_route_type(EVENT_ROUTE);
	if(rt >= 0) {
		init_run_actions_ctx(&ctx);
		run_top_route(event_rt.rlist[rt], fmsg, &ctx);
	} else {
		scb.s = (char *)cb;
		scb.len = cb_len;
		sev.s = (char *)evname;
		sev.len = evname_len;
		if(sr_kemi_route(keng, fmsg, EVENT_ROUTE, &scb, &sev) < 0)
			ret = -1;
	}
	set_route_type(backup_rt);
	if(fmsg->new_uri.s != NULL) {
		pkg_free(fmsg->new_uri.s);
		fmsg->new_uri.s = NULL;
		fmsg->new_uri.len = 0;
		fmsg->parsed_uri_ok = 0;
	}
	return ret;
}

#include "core/socket_info.h"
#include "core/resolve.h"
#include "core/udp_server.h"
#include "core/forward.h"

/* Sends one datagram from the local socket named by `sock` ("udp:ip:port")
 * to ip:port, outside tm: for the leave notice sent while shutting down,
 * when tm's timers no longer run. */
int krs_send(void *sock, int proto, int v6, const unsigned char *ip,
		int port, const char *buf, int len)
{
	struct socket_info *si = (struct socket_info *)sock;
	struct dest_info dst;
	struct ip_addr addr;

	if(si == NULL || si->proto != proto)
		return -1;
	if(proto != PROTO_UDP && proto != PROTO_TCP && proto != PROTO_TLS)
		return -1;
	memset(&addr, 0, sizeof(addr));
	addr.af = v6 ? AF_INET6 : AF_INET;
	addr.len = v6 ? 16 : 4;
	memcpy(addr.u.addr, ip, addr.len);
	init_dest_info(&dst);
	dst.proto = proto;
	dst.send_sock = si;
	init_su(&dst.to, &addr, (unsigned short)port);
	if(proto == PROTO_UDP)
		return udp_send(&dst, (char *)buf, (unsigned)len);
	/* from the DMQ socket's address, as tm sends with a forced socket; the
	 * core finds the connection to ip:port or makes one (tcp_main), and
	 * copies the bytes (its write queue) before returning. Flag 1: no
	 * net-data-out event, as for the UDP path. */
	dst.send_flags.f |= SND_F_FORCE_SOCKET;
	return msg_send_buffer(&dst, (char *)buf, len, 1) < 0 ? -1 : 0;
}

int krs_lock_try(void *lock)
{
	return lock_try((gen_lock_t *)lock) == 0 ? 0 : -1;
}

void krs_pkg_free(void *p)
{
	if(p != NULL)
		pkg_free(p);
}

void krs_set_force_socket(struct sip_msg *msg, void *sock)
{
	set_force_socket(msg, (struct socket_info *)sock);
}

int krs_parse_all_headers(struct sip_msg *msg)
{
	return parse_headers(msg, HDR_EOH_F, 0) < 0 ? -1 : 0;
}

/* Every address `name` resolves to through the core's resolver (its DNS
 * cache when use_dns_cache is on, else gethostbyname and /etc/hosts, with
 * dns_try_ipv6 as configured). Each address takes 17 bytes of `out`: a
 * family byte (4 or 6) and 16 address bytes. Returns how many were written. */
int krs_resolve_host(const char *name, unsigned char *out, int max)
{
	char host[256];
	struct hostent *he;
	size_t len;
	int i, n = 0;

	len = strlen(name);
	if(len == 0 || len >= sizeof(host))
		return 0;
	/* resolvehost may write into the name (IPv6 brackets): give it a copy */
	memcpy(host, name, len + 1);
	he = resolvehost(host);
	if(he == NULL || (he->h_addrtype != AF_INET && he->h_addrtype != AF_INET6))
		return 0;
	for(i = 0; he->h_addr_list[i] != NULL && n < max; i++) {
		unsigned char *slot = out + n * 17;
		memset(slot, 0, 17);
		slot[0] = he->h_addrtype == AF_INET ? 4 : 6;
		memcpy(slot + 1, he->h_addr_list[i], he->h_addrtype == AF_INET ? 4 : 16);
		n++;
	}
	return n;
}

#include "core/parser/parse_cseq.h"
#include "core/script_cb.h"

int krs_msg_source(struct sip_msg *msg, unsigned char *ip, int *port)
{
	struct ip_addr *src = &msg->rcv.src_ip;
	if(src->af != AF_INET && src->af != AF_INET6)
		return -1;
	memset(ip, 0, 16);
	memcpy(ip, src->u.addr, src->af == AF_INET ? 4 : 16);
	*port = msg->rcv.src_port;
	return src->af == AF_INET ? 4 : 6;
}

int krs_reply_ids(struct sip_msg *msg, str *branch, str *callid,
		str *cseq_number, str *cseq_method)
{
	struct cseq_body *cseq;
	if(msg->first_line.type != SIP_REPLY || msg->via1 == NULL
			|| msg->via1->branch == NULL || msg->callid == NULL
			|| msg->cseq == NULL || msg->cseq->parsed == NULL)
		return -1;
	cseq = get_cseq(msg);
	*branch = msg->via1->branch->value;
	*callid = msg->callid->body;
	*cseq_number = cseq->number;
	*cseq_method = cseq->method;
	return (int)msg->first_line.u.reply.statuscode;
}

int krs_request_ids(struct sip_msg *msg, str *ruri, str *callid, str *cseq_number)
{
	if(msg->first_line.type != SIP_REQUEST
			|| parse_headers(msg, HDR_CALLID_F | HDR_CSEQ_F, 0) < 0
			|| msg->callid == NULL || msg->cseq == NULL
			|| msg->cseq->parsed == NULL)
		return -1;
	*ruri = msg->first_line.u.request.uri;
	*callid = msg->callid->body;
	*cseq_number = get_cseq(msg)->number;
	return 0;
}

int krs_msg_header(struct sip_msg *msg, const char *name, int name_len, str *value)
{
	struct hdr_field *h;
	if(parse_headers(msg, HDR_EOH_F, 0) < 0)
		return -1;
	for(h = msg->headers; h != NULL; h = h->next) {
		if(h->name.len == name_len && strncasecmp(h->name.s, name, name_len) == 0) {
			*value = h->body;
			return 0;
		}
	}
	return -1;
}

int krs_register_pre_reply_cb(int (*f)(struct sip_msg *, unsigned int, void *), void *param)
{
	return register_script_cb(f, PRE_SCRIPT_CB | ONREPLY_CB, param);
}

int krs_socket_sent_by(void *sock, char *buf, int len)
{
	struct socket_info *si = (struct socket_info *)sock;
	str *host, *port;
	int n, brackets;

	if(si == NULL)
		return -1;
	/* an advertised address is what peers must reply to */
	host = si->useinfo.name.len > 0 ? &si->useinfo.name : &si->address_str;
	port = si->useinfo.port_no_str.len > 0 ? &si->useinfo.port_no_str
										   : &si->port_no_str;
	brackets = si->address.af == AF_INET6 && host->len > 0 && host->s[0] != '[';
	n = snprintf(buf, len, brackets ? "[%.*s]:%.*s" : "%.*s:%.*s", host->len,
			host->s, port->len, port->s);
	if(n < 0 || n >= len)
		return -1;
	return si->proto;
}
