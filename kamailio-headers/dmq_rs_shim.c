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
