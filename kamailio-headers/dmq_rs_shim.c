/* dmq_rs C shim. See dmq_rs_shim.h for why each function exists. */
#include "core/sr_module.h"
#include "core/dprint.h"
#include "core/mem/shm_mem.h"
#include "core/locking.h"
#include "core/cfg/cfg_struct.h"
#include "core/ver_defs.h"

#include "dmq_rs_shim.h"

int dmq_rs_log_enabled(int level)
{
	return is_printable(level);
}

void dmq_rs_log(int level, const char *prefix, const char *func, const char *msg)
{
	LOG_FX(DEFAULT_FACILITY, level, NULL, prefix, func, "%s\n", msg);
}

void *dmq_rs_shm_malloc(size_t size)
{
	return shm_malloc(size);
}

void *dmq_rs_shm_mallocxz(size_t size)
{
	return shm_mallocxz(size);
}

void dmq_rs_shm_free(void *p)
{
	shm_free(p);
}

void *dmq_rs_lock_alloc_init(void)
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

void dmq_rs_lock_destroy_dealloc(void *lock)
{
	lock_destroy((gen_lock_t *)lock);
	lock_dealloc((gen_lock_t *)lock);
}

void dmq_rs_lock_get(void *lock)
{
	lock_get((gen_lock_t *)lock);
}

void dmq_rs_lock_release(void *lock)
{
	lock_release((gen_lock_t *)lock);
}

void dmq_rs_cfg_update(void)
{
	cfg_update();
}

const char *dmq_rs_core_full_version(void)
{
	return SER_FULL_VERSION;
}

const char *dmq_rs_core_compile_flags(void)
{
	return SER_COMPILE_FLAGS;
}

#include "core/parser/msg_parser.h"
#include "core/parser/parse_uri.h"
#include "core/parser/parse_content.h"
#include "core/ut.h"
#include "core/ip_addr.h"

int dmq_rs_msg_ruri_user(struct sip_msg *msg, str *user)
{
	if(parse_sip_msg_uri(msg) < 0)
		return -1;
	*user = msg->parsed_uri.user;
	return 0;
}

int dmq_rs_msg_body(struct sip_msg *msg, str *body)
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

int dmq_rs_msg_max_forwards(struct sip_msg *msg)
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

int dmq_rs_msg_src_ip(struct sip_msg *msg, char *buf, int len)
{
	int n = ip_addr2sbuf(&msg->rcv.src_ip, buf, len - 1);
	if(n <= 0)
		return -1;
	buf[n] = '\0';
	return n;
}
